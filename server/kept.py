"""Values worked out from an object, kept while the same object comes back.

The hot paths ask again and again with the same long-lived objects (a
plan's audience rule, a plan's page answer): the value is built once per
object. Entries are keyed by the object's id and hold the object, so that
its id is not reused while the entry lives; the whole map is dropped when
it reaches its limit, as objects come and go with plan writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


class KeptById(Generic[T, V]):
    def __init__(self, make: Callable[[T], V], limit: int = 10_000) -> None:
        self._make = make
        self._limit = limit
        self._kept: dict[int, tuple[T, V]] = {}

    def __call__(self, obj: T) -> V:
        kept = self._kept.get(id(obj))
        if kept is not None and kept[0] is obj:
            return kept[1]
        if len(self._kept) >= self._limit:
            self._kept.clear()
        value = self._make(obj)
        self._kept[id(obj)] = (obj, value)
        return value
