"""Metrics operators can use (issue 23): scraped from the server's own
endpoint before and after a run, every counter moved by exactly what the run
did, and promtool accepts the scrape."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.stand_ins.population import LEVELS
from tests.conftest import unavailable
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, immediate_plan

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SCOPE = ("otel_scope_name", "otel_scope_schema_url", "otel_scope_version")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def samples(text: str) -> Samples:
    """Every sample by name and labels (the exporter's scope labels left out)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = frozenset((k, v) for k, v in s.labels.items() if k not in _SCOPE)
            out[(s.name, labels)] = s.value
    return out


def total(found: Samples, name: str, **match: str) -> float:
    """The sum of a metric's samples whose labels include `match`."""
    wanted = set(match.items())
    return sum(v for (n, labels), v in found.items() if n == name and wanted <= labels)


def moved(before: Samples, after: Samples, name: str, by: str) -> Counter[str]:
    """How much each value of label `by` moved between two scrapes."""
    out: Counter[str] = Counter()
    for (n, labels), value in after.items():
        if n == name:
            key = dict(labels).get(by, "")
            out[key] += round(value - before.get((n, labels), 0.0))
    return +out


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool", FileNotFoundError("promtool"))
    assert found is not None
    return found


def check_metrics(text: str) -> str:
    """What `promtool check metrics` finds wrong with a scrape ("" for nothing)."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


async def _finished(client: AsyncCustopsClient, plan: pb.Plan) -> pb.PlanRun:
    for _ in range(600):  # bounded: the engine runs it
        listed = await client.plans.list_plan_runs(
            pb.ListPlanRunsRequest(shop_id=plan.shop_id, plan_id=plan.plan_id)
        ).first_page()
        if listed.runs and listed.runs[0].state == pb.RUN_STATE_SUCCEEDED:
            run: pb.PlanRun = listed.runs[0]
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not finish")


async def test_a_runs_outcomes_move_the_counters_by_exactly_what_it_did(
    database_url: str,
) -> None:
    platform = Platform(
        settings(database_url, stubs_population=1_000, engine_poll=0.05, health_interval=0.2),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            plan = immediate_plan()
            plan.audience.CopyFrom(
                audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=list(LEVELS)))
            )
            plan.measurement.holdout_percent = 20  # members granted, and members held out
            draft = (
                await client.plans.create_plan(pb.CreatePlanRequest(shop_id="s1", plan=plan))
            ).plan
            await asyncio.sleep(0.5)  # the gauges sampled once at least
            before = samples(scrape(platform.metrics_port))
            await client.plans.publish_plan(
                pb.PublishPlanRequest(shop_id="s1", plan_id=draft.plan_id, etag=draft.etag)
            )
            run = await _finished(client, draft)
            statistics = (
                await client.plans.get_plan_statistics(
                    pb.GetPlanStatisticsRequest(shop_id="s1", plan_id=draft.plan_id)
                )
            ).statistics
            text = scrape(platform.metrics_port)
            throttles = (
                await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())
            ).settings
    finally:
        await platform.stop(grace=1)
    after = samples(text)

    # Members by outcome: exactly the run's, as its statistics count them.
    outcomes = Counter(
        {
            pb.MemberOutcomeKind.Name(c.outcome).removeprefix("MEMBER_OUTCOME_KIND_").lower(): (
                c.members
            )
            for c in statistics.outcome_counts
            if not c.day and not c.test
        }
    )
    assert set(outcomes) == {"granted", "held_out"}, outcomes
    assert moved(before, after, "custops_run_members_total", "outcome") == outcomes
    granted = outcomes["granted"]
    assert run.progress.total == sum(outcomes.values())

    # The benefit bucket admitted one token per grant; the downstream was
    # called; the calls served are counted by method and status.
    assert (
        moved(before, after, "custops_throttle_tokens_granted_total", "bucket")["benefit"]
        == granted
    )
    assert (
        moved(before, after, "custops_throttle_tokens_requested_total", "bucket")["benefit"]
        == granted
    )
    grants = moved(before, after, "rpc_client_call_duration_seconds_count", "rpc_method")
    assert grants["custops.benefit.v1.BenefitService/BatchGrantBenefits"] >= 1
    served = moved(before, after, "rpc_server_call_duration_seconds_count", "rpc_method")
    assert served["custops.plan.v1.OperationPlanService/PublishPlan"] == 1
    assert moved(before, after, "custops_run_batches_total", "kind")["plan_delivery"] >= 1
    # The rate in force, as GetThrottleSettings shows it (the database is
    # shared with other tests, which may have set it).
    benefit = next(t for t in throttles if t.downstream == pb.DOWNSTREAM_BENEFIT)
    rate = total(after, "custops_throttle_rate_per_second", bucket="benefit")
    assert rate == benefit.effective_rate_per_second > 0
    assert (
        "custops_db_pool_connections",
        frozenset({("pool", "primary"), ("state", "used")}),
    ) in after
    assert ("custops_runs_in_flight", frozenset()) in after

    # The scrape is valid Prometheus exposition, names and units included.
    assert check_metrics(text) == ""
