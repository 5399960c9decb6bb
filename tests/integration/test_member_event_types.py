"""Every kind of member event goes in through RecordMemberEvents, each taken
or refused on its own: a stranger to the audience system, an event too old
or from too far ahead, a type this platform does not know."""

from __future__ import annotations

from datetime import timedelta

from custops.scenario.v1 import scenario_pb2 as spb
from tests.integration.test_measurement import ACCEPTED, DUPLICATE, REFUSED, record
from tests.integration.test_run_rules import Ops, manual
from tests.integration.test_runs import NOW

__all__ = ["manual"]


def event(
    event_id: str, member: str, kind: int, ago: timedelta = timedelta(minutes=1), **fields: str
) -> spb.MemberEvent:
    e = spb.MemberEvent(event_id=event_id, member_id=member, type=kind, **fields)  # type: ignore[arg-type]
    e.occur_time.FromDatetime(NOW - ago)
    return e


async def test_each_event_type_goes_in_and_bad_ones_are_refused_alone(manual: Ops) -> None:
    manual.set_clock(NOW)
    member, other = sorted(manual.members(lambda m: True))[:2]
    batch = [
        event("c-1", member, spb.MEMBER_EVENT_TYPE_CARTED, item_id="sku-1"),
        event("b-1", member, spb.MEMBER_EVENT_TYPE_BROWSED, item_id="sku-2"),
        event("f-1", other, spb.MEMBER_EVENT_TYPE_FOLLOWED),
        event("r-1", other, spb.MEMBER_EVENT_TYPE_REGISTERED),
        event("l-1", member, spb.MEMBER_EVENT_TYPE_LEVEL_CHANGED, level="V3"),
        event("stranger", "nobody-at-all", spb.MEMBER_EVENT_TYPE_CARTED),
        event("old", member, spb.MEMBER_EVENT_TYPE_CARTED, ago=timedelta(days=91)),
        event("ahead", member, spb.MEMBER_EVENT_TYPE_CARTED, ago=-timedelta(minutes=6)),
        event("no-level", member, spb.MEMBER_EVENT_TYPE_LEVEL_CHANGED),
        event("what", member, 99),
    ]
    results = await record(manual, *batch)
    assert [(r.event_id, r.result, r.reason) for r in results] == [
        ("c-1", ACCEPTED, ""),
        ("b-1", ACCEPTED, ""),
        ("f-1", ACCEPTED, ""),
        ("r-1", ACCEPTED, ""),
        ("l-1", ACCEPTED, ""),
        ("stranger", REFUSED, "UNKNOWN_MEMBER"),
        ("old", REFUSED, "INVALID_EVENT"),
        ("ahead", REFUSED, "INVALID_EVENT"),
        ("no-level", REFUSED, "INVALID_EVENT"),
        ("what", REFUSED, "INVALID_EVENT"),
    ]
    by_id = {r.event_id: r.message for r in results}
    assert "nobody-at-all" in by_id["stranger"]
    assert "90 days ago" in by_id["old"] and "future" in by_id["ahead"]
    assert "level" in by_id["no-level"]
    assert "CARTED" in by_id["what"] and "LEVEL_CHANGED" in by_id["what"]
    # Replayed, the accepted ones change nothing; a refused one may come back
    # mended and is taken then.
    again = await record(manual, *batch[:5], event("no-level", member, 7, level="V4"))
    assert [r.result for r in again] == [DUPLICATE] * 5 + [ACCEPTED]
