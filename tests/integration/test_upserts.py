"""insert_new, the write every run batch relies on for exactly-once counting,
on both databases and on PostgreSQL's unnest path with its edge cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, select

from server.persistence.database import create_engine
from server.persistence.tables import UtcDateTime
from server.persistence.upserts import insert_new, insert_new_columns

SEP = chr(31)


def _keyed(*columns: Column[Any]) -> Table:
    """A table of its own for one test, keyed by text."""
    return Table(
        f"t_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("key", String(64), primary_key=True),
        *columns,
    )


def _table() -> Table:
    return _keyed(
        Column("note", String(64), nullable=False),
        Column("n", BigInteger, nullable=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("detail", JSON, nullable=False),
        # A Python-side default: the raw unnest statement would skip it.
        Column("weight", BigInteger, nullable=False, default=7),
    )


async def test_only_new_rows_are_inserted_and_reported(database_url: str) -> None:
    engine = create_engine(database_url)
    table = _table()
    at = datetime(2026, 11, 25, 9, tzinfo=UTC)
    rows = [
        {
            "key": f"k{i}",
            # An empty string and the separator itself keep their values.
            "note": ["", f"a{SEP}b", "plain"][i % 3],
            "n": 2**40 + i,
            "at": at + timedelta(seconds=i),
            "detail": {"i": i, "名": "会员"},
            "weight": 2,
        }
        for i in range(6)
    ]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            assert await insert_new(conn, table, rows[:4], "key") == {"k0", "k1", "k2", "k3"}
            # Again, with two more and a duplicate inside the same batch.
            again = [*rows, rows[5]]
            assert await insert_new(conn, table, again, "key") == {"k4", "k5"}
            # A column with a Python-side default left out: the default applies.
            new = {k: v for k, v in rows[0].items() if k != "weight"} | {"key": "k6"}
            assert await insert_new(conn, table, [new], "key") == {"k6"}
            stored = {r.key: r for r in (await conn.execute(select(table))).all()}
        assert len(stored) == 7
        for row in rows:
            got = stored[row["key"]]
            assert (got.note, got.n, got.at, got.detail, got.weight) == (
                row["note"],
                row["n"],
                row["at"],
                row["detail"],
                row["weight"],
            )
        assert stored["k6"].weight == 7
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()


async def test_nulls_and_separators_keep_their_values(database_url: str) -> None:
    """Each column goes to PostgreSQL as one text split by the server: a SQL
    NULL, a value holding the null marker, a lone empty string and JSON's
    null each come back as they went in."""
    engine = create_engine(database_url)
    table = _keyed(
        Column("maybe", String(64), nullable=True),
        Column("at", UtcDateTime(), nullable=True),
        Column("detail", JSON, nullable=True),
    )
    at = datetime(2026, 12, 6, 8, 30, 0, 123456, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"key": "a", "maybe": None, "at": None, "detail": None},
        {"key": "b", "maybe": f"x{chr(30)}y", "at": at, "detail": {"s": chr(31)}},
        {"key": "c", "maybe": "", "at": at, "detail": []},
    ]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            assert await insert_new(conn, table, rows, "key") == {"a", "b", "c"}
            lone: list[dict[str, Any]] = [{"key": "d", "maybe": "", "at": at, "detail": {}}]
            assert await insert_new(conn, table, lone, "key") == {"d"}
            stored = {r.key: r for r in (await conn.execute(select(table))).all()}
        for row in [*rows, *lone]:
            got = stored[row["key"]]
            assert (got.maybe, got.at, got.detail) == (row["maybe"], row["at"], row["detail"])
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()


async def test_rows_given_column_by_column_are_stored_as_rows_are(database_url: str) -> None:
    """insert_new_columns, a run batch's write: the same rows, the same
    answer, on both databases; columns of unequal lengths are refused."""
    engine = create_engine(database_url)
    table = _table()
    at = datetime(2026, 11, 25, 9, tzinfo=UTC)
    columns: dict[str, Any] = {
        "key": ("k0", "k1", "k2"),
        "note": ("", f"a{SEP}b", "plain"),
        "n": (1, 2**40, 3),
        "at": (at, at, at + timedelta(microseconds=1)),
        "detail": [{}, {"名": "会员"}, {"i": 2}],
        "weight": (2, 2, 2),
    }
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            assert await insert_new_columns(conn, table, columns, "key") == {"k0", "k1", "k2"}
            assert await insert_new_columns(conn, table, columns, "key") == set()  # replayed
            # Not asked to report: the row goes in all the same.
            more = {name: values[:1] for name, values in columns.items()} | {"key": ("k9",)}
            assert await insert_new_columns(conn, table, more, "key", report=False) == set()
            assert await insert_new_columns(conn, table, {"key": ()}, "key") == set()
            with pytest.raises(ValueError, match="unequal lengths"):
                await insert_new_columns(conn, table, {**columns, "n": (1, 2)}, "key")
            stored = sorted((await conn.execute(select(table))).all())
        assert [(r.key, r.note, r.n, r.at, r.detail, r.weight) for r in stored] == [
            tuple(values) for values in zip(*columns.values(), strict=True)
        ] + [("k9", "", 1, at, {}, 2)]
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()


async def test_a_value_every_row_shares_is_stored_in_every_row(database_url: str) -> None:
    """A run's batch repeats its shop, plan and time in every row (sent once
    on PostgreSQL): each such value, a NULL, JSON's null, an empty text and
    one holding a separator among them, comes back in every row."""
    engine = create_engine(database_url)
    table = _keyed(
        Column("maybe", String(64), nullable=True),
        Column("note", String(64), nullable=False),
        Column("n", BigInteger, nullable=True),
        Column("at", UtcDateTime(), nullable=True),
        Column("detail", JSON, nullable=True),
    )
    at = datetime(2026, 12, 7, 1, 0, 0, 654321, tzinfo=timezone(timedelta(hours=8)))
    shared: list[dict[str, Any]] = [
        {"maybe": None, "note": "", "n": None, "at": None, "detail": None},
        {"maybe": "x", "note": f"a{SEP}b{chr(30)}", "n": 2**40, "at": at, "detail": {}},
        {"maybe": "", "note": "plain", "n": 0, "at": at, "detail": {"名": [1, None]}},
    ]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            for number, values in enumerate(shared):
                keys = [f"{number}-{i}" for i in range(3)]
                rows = [{"key": k, **values} for k in keys]
                assert await insert_new(conn, table, rows, "key") == set(keys)
                assert await insert_new(conn, table, rows, "key") == set()  # replayed
            stored = (await conn.execute(select(table).order_by(table.c.key))).all()
        assert [(r.maybe, r.note, r.n, r.at, r.detail) for r in stored] == [
            tuple(values.values()) for values in shared for _ in range(3)
        ]
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()


async def test_keys_that_start_alike_are_stored_whole(database_url: str) -> None:
    """A run's record ids share a long start (sent once on PostgreSQL): each
    comes back whole, the one that is only that start and, beside a value
    holding a separator, those the driver encodes too."""
    engine = create_engine(database_url)
    table = _table()
    at = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    start = "plans/p-0123456789/runs/r-0123456789/members/"
    batches = [
        [start, f"{start}m1/actions/0", f"{start}m2/actions/0"],
        [f"{start}m3", f"{start}m4{SEP}x", f"{start}会员{chr(30)}"],
    ]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
            for keys in batches:
                columns: dict[str, Any] = {
                    "key": keys,
                    "note": [f"{start}note-{k[-1]}" for k in keys],
                    "n": range(len(keys)),
                    "at": (at,) * len(keys),
                    "detail": [{}] * len(keys),
                    "weight": (1,) * len(keys),
                }
                assert await insert_new_columns(conn, table, columns, "key") == set(keys)
            stored = {r.key: r.note for r in (await conn.execute(select(table))).all()}
        assert stored == {k: f"{start}note-{k[-1]}" for keys in batches for k in keys}
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all)
        await engine.dispose()
