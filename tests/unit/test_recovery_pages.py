"""server.runs.recovery: a recovery pages the run it takes back by member."""

from __future__ import annotations

from datetime import UTC, datetime

from domain import runs
from server.persistence.recovery_store import GrantedInstance
from server.runs.recovery import Recovery, payload_of

PAYLOAD = payload_of("rec1", "s1", "p1", "r1", "wrong audience")


class Store:
    """The run's grants: members m1, m-1 (a '-' sorts before '/') and m2."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, int, bool]] = []

    async def granted(
        self, shop_id: str, target_run_id: str, after: str, limit: int, *, inclusive: bool = False
    ) -> tuple[list[GrantedInstance], str | None]:
        self.asked.append((shop_id, target_run_id, after, limit, inclusive))
        key = runs.grant_key("p1", "r1", after or "m1", 0, 0)
        return [GrantedInstance(f"{key}#i1", after or "m1", "i1")], after or "m1"


def recovery(store: Store) -> Recovery:
    return Recovery(store, None, lambda: datetime(2026, 12, 7, tzinfo=UTC))  # type: ignore[arg-type]


async def test_a_page_starts_after_the_last_member_and_names_its_own_last() -> None:
    store = Store()
    first = await recovery(store).load(PAYLOAD, "", 500)
    assert store.asked == [("s1", "r1", "", 500, False)]
    assert [i.key for i in first.items] == [runs.grant_key("p1", "r1", "m1", 0, 0) + "#i1"]
    assert first.items[0].data == {"member": "m1", "instance": "i1"}
    await recovery(store).load(PAYLOAD, first.next_cursor or "", 500)
    assert store.asked[1] == ("s1", "r1", "m1", 500, False)


async def test_a_cursor_from_before_member_paging_resumes_at_its_member() -> None:
    """A recovery paused across the upgrade holds the last grant record's id:
    its member is read again from the start (taking back is idempotent by
    key), never skipped, whatever characters the member id holds."""
    store = Store()
    for member in ("m-1", "m/2", "m#3"):
        old = runs.grant_key("p1", "r1", member, 1, 2) + "#instance-9"
        await recovery(store).load(PAYLOAD, old, 500)
        assert store.asked[-1] == ("s1", "r1", member, 500, True)
