"""What a recovery run reads and writes: the "benefit granted" records of
the run it takes back, and, once per instance, what came back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.records import RecordKind
from server.persistence.member_benefits import mark_recovered, recovered_record_id
from server.persistence.tables import operation_records, run_counters, run_members
from server.persistence.upserts import add_counts, insert_new


@dataclass(frozen=True)
class GrantedInstance:
    record_id: str  # the grant's record: the key of the recovery's item
    member_id: str
    instance_id: str


@dataclass(frozen=True)
class RecoveryRun:
    run_id: str
    shop_id: str
    plan_id: str
    target_run_id: str  # the run taken back


class RecoveryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def granted(
        self, shop_id: str, target_run_id: str, after: str, limit: int, *, inclusive: bool = False
    ) -> tuple[list[GrantedInstance], str | None]:
        """The run's grants, `limit` of its members at a time in member order,
        from the member after `after` (or `after` itself, `inclusive`): the
        instances granted to them, and the last of them (None at the end).

        Read through the run's members and each member's records, so that
        the records need no index by run, which every grant would maintain."""
        members_c, records = run_members.c, operation_records.c
        start = members_c.member_id >= after if inclusive else members_c.member_id > after
        async with self._engine.connect() as conn:
            members = list(
                (
                    await conn.execute(
                        select(members_c.member_id)
                        .where(members_c.run_id == target_run_id, start)
                        .order_by(members_c.member_id)
                        .limit(limit)
                    )
                ).scalars()
            )
            if not members:
                return [], None
            rows = await conn.execute(
                select(records.record_id, records.member_id, records.instance_id)
                .where(
                    records.shop_id == shop_id,
                    records.member_id.in_(members),
                    records.run_id == target_run_id,
                    records.kind == RecordKind.BENEFIT_GRANTED.value,
                )
                .order_by(records.member_id, records.record_id)
            )
            found = [GrantedInstance(r[0], r[1], r[2]) for r in rows]
        return found, members[-1] if len(members) == limit else None

    async def came_back(
        self,
        run: RecoveryRun,
        recovered: Sequence[GrantedInstance],
        not_unused: Sequence[GrantedInstance],
        skip_reason: str,
        now: datetime,
    ) -> None:
        """Records of what came back and the run's outcome per instance, once
        each; the counters count only the rows that were new."""
        async with self._engine.begin() as conn:
            new_records = await insert_new(
                conn,
                operation_records,
                [
                    {
                        "record_id": recovered_record_id(g.instance_id),
                        "shop_id": run.shop_id,
                        "member_id": g.member_id,
                        "kind": RecordKind.BENEFIT_RECOVERED.value,
                        "plan_id": run.plan_id,
                        "run_id": run.run_id,
                        "instance_id": g.instance_id,
                        "template_id": "",
                        "detail": {"recovers_run_id": run.target_run_id},
                        "occur_time": now,
                    }
                    for g in recovered
                ],
                "record_id",
            )
            await mark_recovered(conn, run.shop_id, [g.instance_id for g in recovered])
            # In a recovery run the unit is the instance: run_members holds
            # each instance's outcome once, so a replayed batch counts nothing twice.
            outcomes = ((recovered, "recovered"), (not_unused, f"skip:{skip_reason}"))
            met = await insert_new(
                conn,
                run_members,
                [
                    {"run_id": run.run_id, "member_id": g.instance_id, "outcome": o, "units": 0}
                    for found, o in outcomes
                    for g in found
                ],
                "member_id",
            )
            counts = Counter({"recovered": len(new_records)})
            counts[f"skipped.{skip_reason}"] = sum(g.instance_id in met for g in not_unused)
            await add_counts(conn, run_counters, {"run_id": run.run_id}, dict(counts))
