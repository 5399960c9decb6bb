"""server.kept.KeptById: a value built once per object, not per equal object."""

from __future__ import annotations

from server.kept import KeptById


def test_the_same_object_is_built_once_and_an_equal_one_again() -> None:
    built: list[list[int]] = []

    def make(xs: list[int]) -> int:
        built.append(xs)
        return sum(xs)

    kept = KeptById(make, limit=2)
    a, b = [1, 2], [1, 2]
    assert (kept(a), kept(a), kept(b)) == (3, 3, 3)
    assert built == [a, b] and built[0] is a and built[1] is b
    # At its limit the map starts again: a is built anew after c.
    c = [5]
    assert (kept(c), kept(a)) == (5, 3)
    assert len(built) == 4
