"""The composition root: every adapter built once, and the use cases and
job kinds built on them. server/app.py owns what has a lifetime (the
database, Redis, the channels, the gRPC server, the workers) and asks this
module for the parts in between; nothing else builds adapters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.ports import Clock
from domain.products import ProductTemplate
from server.downstream.audience import GrpcAudienceDirectory
from server.downstream.benefit import GrpcBenefitCatalog
from server.downstream.notify import GrpcMessageSender
from server.downstream.throttled import ThrottledAudience, ThrottledBenefits, ThrottledMessages
from server.metrics import NO_METRICS, Metrics
from server.persistence.active_plans import ActivePlans, PlanVersions
from server.persistence.audit_log import AuditLog
from server.persistence.database import create_read_engine
from server.persistence.effect_reads import EffectReads
from server.persistence.member_benefits import MemberBenefits
from server.persistence.member_data import MemberData
from server.persistence.member_events import MemberEventStore
from server.persistence.member_records import RecordReader
from server.persistence.outcome_reads import OutcomeReads
from server.persistence.recovery_store import RecoveryStore
from server.persistence.run_store import RunStore
from server.persistence.task_store import TaskStore
from server.persistence.throttle_settings import SqlThrottleSettings
from server.persistence.unit_of_work import SqlUnitOfWork
from server.runs.delivery import Delivery
from server.runs.recovery import Recovery
from server.tasks.kinds import JobKind
from server.throttle.buckets import Buckets
from server.usecases.member_data import MemberDataUseCases, Retention
from server.usecases.outcomes import OutcomeUseCases
from server.usecases.plan_effect import PlanEffectUseCases
from server.usecases.plans import PlanUseCases
from server.usecases.runs import RunUseCases
from server.usecases.scenario import ScenarioUseCases
from server.usecases.shop_policy import ShopPolicyUseCases
from server.usecases.throttle import ThrottleUseCases


@dataclass(frozen=True)
class Channels:
    """One channel per downstream system (their interceptors already on)."""

    audience: grpc.aio.Channel
    benefit: grpc.aio.Channel
    notification: grpc.aio.Channel


@dataclass(frozen=True)
class Parts:
    plans: PlanUseCases
    runs: RunUseCases
    outcomes: OutcomeUseCases
    effects: PlanEffectUseCases
    member_data: MemberDataUseCases
    scenario: ScenarioUseCases
    throttle: ThrottleUseCases
    policies: ShopPolicyUseCases
    audit: AuditLog
    jobs: TaskStore
    job_kinds: dict[str, JobKind]
    read_engine: AsyncEngine  # the shopper's side's pool: the caller disposes of it


def build(
    engine: AsyncEngine,
    clock: Clock,
    channels: Channels,
    buckets: Buckets,
    catalog: Mapping[str, ProductTemplate],
    retention: Retention,
    throttle_settings: SqlThrottleSettings,
    metrics: Metrics = NO_METRICS,
    plan_versions: PlanVersions | None = None,
) -> Parts:
    # The downstream systems, each behind one adapter; the runs reach them
    # through their buckets, the calls' own work directly.
    audience = GrpcAudienceDirectory(channels.audience)
    benefit_platform = GrpcBenefitCatalog(channels.benefit)
    sender = GrpcMessageSender(channels.notification)
    throttled_benefits = ThrottledBenefits(benefit_platform, buckets, metrics)

    # The shopper's side caches a shop's live plans; every plan write
    # committed through a unit of work drops the shop's entry, on every
    # replica when they share versions.
    active_plans = ActivePlans(engine, versions=plan_versions)

    def unit_of_work() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, clock, active_plans.changed)

    read_engine = create_read_engine(engine)
    member_benefits = MemberBenefits(engine, clock.now, read_engine)
    audit = AuditLog(engine)
    jobs = TaskStore(engine)
    run_store = RunStore(engine)
    delivery = Delivery(
        run_store,
        ThrottledAudience(audience, buckets, metrics),
        throttled_benefits,
        ThrottledMessages(sender, buckets, metrics),
        clock.now,
    )
    recovery = Recovery(RecoveryStore(engine), throttled_benefits, clock.now)
    headlines = {t.preset.product_id: t.headline for t in catalog.values() if t.headline}
    return Parts(
        plans=PlanUseCases(
            unit_of_work,
            clock,
            audience,
            dict(catalog),
            benefit_platform,
            member_benefits.taken_back,
        ),
        runs=RunUseCases(unit_of_work, run_store, jobs, audience, clock),
        outcomes=OutcomeUseCases(unit_of_work, OutcomeReads(engine)),
        effects=PlanEffectUseCases(unit_of_work, EffectReads(engine), clock),
        member_data=MemberDataUseCases(
            MemberEventStore(engine),
            audience,
            active_plans,
            MemberData(engine),
            unit_of_work,
            clock,
            retention,
        ),
        scenario=ScenarioUseCases(
            RecordReader(engine),
            member_benefits,
            active_plans,
            audience,
            benefit_platform,
            unit_of_work,
            clock,
            headlines=headlines,
        ),
        throttle=ThrottleUseCases(buckets, clock.now, throttle_settings, unit_of_work),
        policies=ShopPolicyUseCases(unit_of_work, clock),
        audit=audit,
        jobs=jobs,
        job_kinds={delivery.name: delivery, recovery.name: recovery},
        read_engine=read_engine,
    )
