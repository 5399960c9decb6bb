"""Reading members' outcomes (docs/outcomes.md): pages of a run, a plan or a
member, the chunks an export streams, and counts by run and stored outcome.

Every page walks an index in (run id, member id) order: a run's members by
the primary key, a plan's runs one after another, a member's runs by
`ix_run_members_member`. No query sorts more than the page it returns, so
an export of a million outcomes costs the same per row as its first page.
Recovery runs are not read here: their rows are benefit instances, which
the member's benefits and records tell.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import outcomes
from domain.outcomes import MemberOutcome, OutcomeKind
from domain.runs import RunKind, RunTrigger
from server.persistence.tables import plan_runs, run_members, trigger_waits

_rm, _pr, _tw = run_members.c, plan_runs.c, trigger_waits.c
# The runs whose rows are members (a recovery run's are benefit instances).
_MEMBER_RUNS = (RunKind.DELIVERY.value, RunKind.TEST.value)


@dataclass(frozen=True)
class OutcomeFilter:
    """Which outcomes to read: these kinds (none: all), this reason ("": any)."""

    kinds: frozenset[OutcomeKind] = frozenset()
    reason: str = ""  # [A-Z0-9_], checked by the caller: it goes into LIKE patterns


@dataclass(frozen=True)
class RunOfOutcomes:
    run_id: str
    plan_id: str
    kind: str
    grants: bool
    fire_time: datetime
    trigger: str = ""


@dataclass(frozen=True)
class OutcomeCount:
    """Members of one run with one stored outcome."""

    run: RunOfOutcomes
    stored: str
    members: int


class OutcomeReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def runs(self, shop_id: str, plan_id: str, run_id: str = "") -> list[RunOfOutcomes]:
        """The plan's runs that have member outcomes (or that one run, of
        whichever plan of the shop when no plan is named), by id."""
        where = [_pr.shop_id == shop_id, _pr.kind.in_(_MEMBER_RUNS)]
        if plan_id:
            where.append(_pr.plan_id == plan_id)
        if run_id:
            where.append(_pr.run_id == run_id)
        query = select(*_RUN_COLUMNS).where(*where, _pr.job_id != "").order_by(_pr.run_id)
        async with self._engine.connect() as conn:
            return [_run(r) for r in await conn.execute(query)]

    async def run_page(
        self, run: RunOfOutcomes, which: OutcomeFilter, after_member: str, limit: int
    ) -> list[MemberOutcome]:
        """A run's outcomes after `after_member`, by member id."""
        query = (
            select(_rm.member_id, _rm.outcome)
            .where(_rm.run_id == run.run_id, _rm.member_id > after_member, _matching(which, run))
            .order_by(_rm.member_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            return await _with_events(conn, [(run, member, stored) for member, stored in rows])

    async def plan_page(
        self,
        runs: Sequence[RunOfOutcomes],
        which: OutcomeFilter,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[MemberOutcome]:
        """Outcomes of these runs (by run id) after (run id, member id)."""
        page: list[MemberOutcome] = []
        for run in runs:
            if after is not None and run.run_id < after[0]:
                continue
            start = after[1] if after is not None and run.run_id == after[0] else ""
            page += await self.run_page(run, which, start, limit - len(page))
            if len(page) >= limit:
                break
        return page

    async def member_page(
        self, shop_id: str, member_id: str, which: OutcomeFilter, after_run: str, limit: int
    ) -> list[MemberOutcome]:
        """A member's outcomes in the shop's runs after `after_run`, by run id."""
        query = (
            select(_rm.member_id, _rm.outcome, *_RUN_COLUMNS)
            .join(plan_runs, _pr.run_id == _rm.run_id)
            .where(
                _rm.member_id == member_id,
                _rm.run_id > after_run,
                _pr.shop_id == shop_id,
                _pr.kind.in_(_MEMBER_RUNS),
                _matching(which, None),
            )
            .order_by(_rm.run_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            return await _with_events(conn, [(_run(r[2:]), r[0], r[1]) for r in rows])

    async def count(self, runs: Sequence[RunOfOutcomes], which: OutcomeFilter) -> int:
        """How many outcomes of these runs `which` selects, in one statement
        (whether a run grants is read from the run joined)."""
        if not runs:
            return 0
        query = (
            select(func.count())
            .select_from(run_members.join(plan_runs, _pr.run_id == _rm.run_id))
            .where(_rm.run_id.in_([run.run_id for run in runs]), _matching(which, None))
        )
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def chunks(
        self, runs: Sequence[RunOfOutcomes], which: OutcomeFilter, size: int
    ) -> AsyncIterator[list[MemberOutcome]]:
        """Every outcome of these runs, `size` at a time, each chunk its own
        short query: memory stays one chunk whatever the total."""
        for run in runs:
            after = ""
            while True:
                chunk = await self.run_page(run, which, after, size)
                if chunk:
                    yield chunk
                if len(chunk) < size:
                    break
                after = chunk[-1].member_id

    async def counts(self, shop_id: str, plan_id: str) -> list[OutcomeCount]:
        """Members by run and stored outcome, counted in the database."""
        query = (
            select(*_RUN_COLUMNS, _rm.outcome, func.count())
            .join(run_members, _rm.run_id == _pr.run_id)
            .where(_pr.shop_id == shop_id, _pr.plan_id == plan_id, _pr.kind.in_(_MEMBER_RUNS))
            .group_by(*_RUN_COLUMNS, _rm.outcome)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [OutcomeCount(_run(r[:6]), r[6], int(r[7])) for r in rows]


_RUN_COLUMNS = (_pr.run_id, _pr.plan_id, _pr.kind, _pr.grants, _pr.fire_time, _pr.run_trigger)
_EVENT = RunTrigger.EVENT.value


def _run(row: Sequence[Any]) -> RunOfOutcomes:
    return RunOfOutcomes(row[0], row[1], row[2], bool(row[3]), row[4], row[5])


async def _with_events(
    conn: AsyncConnection, rows: list[tuple[RunOfOutcomes, str, str]]
) -> list[MemberOutcome]:
    """(run, member, stored outcome) rows as outcomes, each of an event run
    with the event its member waited on: one read per event run on the
    page, by the waits' key."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for run, member, _ in rows:
        if run.trigger == _EVENT:
            wanted.setdefault((run.plan_id, run.run_id), []).append(member)
    events: dict[tuple[str, str], str] = {}
    for (plan_id, run_id), members in wanted.items():
        found = await conn.execute(
            select(_tw.member_id, _tw.event_id).where(
                _tw.plan_id == plan_id, _tw.member_id.in_(members), _tw.run_id == run_id
            )
        )
        events.update({(run_id, m): e for m, e in found})
    return [
        _typed(run, member, stored, events.get((run.run_id, member), ""))
        for run, member, stored in rows
    ]


def _typed(run: RunOfOutcomes, member_id: str, stored: str, event_id: str = "") -> MemberOutcome:
    reading = outcomes.read(stored, run.grants)
    return MemberOutcome(
        run_id=run.run_id,
        plan_id=run.plan_id,
        member_id=member_id,
        kind=reading.kind,
        reason=reading.reason,
        withheld=reading.withheld,
        defer_until=reading.defer_until,
        test=run.kind == RunKind.TEST.value,
        fire_time=run.fire_time,
        run_kind=run.kind,
        event_id=event_id,
    )


def _matching(which: OutcomeFilter, run: RunOfOutcomes | None) -> ColumnElement[bool]:
    """The stored outcomes `which` selects; with the run known, whether it
    grants is known too, else it is read from the joined run."""
    o = _rm.outcome
    acted = or_(o == outcomes.ACT, o.like("act-%"))
    grants: ColumnElement[bool] | bool = _pr.grants if run is None else run.grants
    by_kind: dict[OutcomeKind, ColumnElement[bool]] = {
        OutcomeKind.GRANTED: and_(acted, _is(grants, True)),
        OutcomeKind.SENT: and_(acted, _is(grants, False)),
        OutcomeKind.DEFERRED: o.like(f"{outcomes.DEFER}%"),
        OutcomeKind.SKIPPED: o.like(f"{outcomes.SKIP}%"),
        OutcomeKind.FAILED: o.like(f"{outcomes.FAIL}%"),
        OutcomeKind.HELD_OUT: o == outcomes.HELD_OUT,
    }
    conditions: list[ColumnElement[bool]] = []
    if which.kinds:
        conditions.append(or_(*(by_kind[k] for k in _sorted(which.kinds))))
    if which.reason:
        r = which.reason
        by_reason = [
            o == f"{outcomes.SKIP}{r}",
            o == f"{outcomes.FAIL}{r}",
            o == f"{outcomes.ACT_SILENT}:{r}",
            o.like(f"{outcomes.ACT_EXCEPT}%:{r}"),
        ]
        if r == "QUIET_HOURS":
            by_reason.append(o.like(f"{outcomes.DEFER}%"))
        conditions.append(or_(*by_reason))
    return and_(*conditions) if conditions else true()


def _is(grants: ColumnElement[bool] | bool, value: bool) -> ColumnElement[bool]:
    if isinstance(grants, bool):
        return true() if grants is value else false()
    return grants.is_(value)


def _sorted(kinds: Collection[OutcomeKind]) -> list[OutcomeKind]:
    return sorted(kinds, key=list(OutcomeKind).index)
