"""What the members' pages read from the database, for a batch of members in
one statement (one round trip): each member's usable plan benefits and
latest records, through the (shop, member, …) indexes.

The two reads are one UNION ALL of both tables' rows in one shape (a column
the row's table lacks is NULL), told apart by `part`, ordered by member and
by each part's own page order. Built once: only the values change per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    bindparam,
    func,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.held_benefits import BenefitState
from server.persistence.tables import member_benefits, operation_records

UNUSED = BenefitState.UNUSED.value
BENEFITS, RECORDS = "b", "r"

_b = member_benefits.c
_r = operation_records.c
_TYPES = {c.name: c.type for c in (*member_benefits.columns, *operation_records.columns)}
_NAMES = list(_TYPES)
# A page lists benefits soonest expiry first (no expiry last).
_BENEFIT_ORDER = (_b.valid_until.is_(None), _b.valid_until, _b.instance_id)
_MEMBERS: BindParameter[Any] = bindparam("members", expanding=True)


def _shaped(columns: Any) -> list[ColumnElement[Any]]:
    own = {c.name: c for c in columns}
    return [
        own[name] if name in own else type_coerce(null(), _TYPES[name]).label(name)
        for name in _NAMES
    ]


# Unused and valid benefits, ranked by the page's order within the member's
# kinds on each side of `split` (kinds some front offices cannot use): the
# first `benefit_limit` of a front office that hides them and of one that
# does not are both among the rows. `pos` is the member's own order.
_ranked_benefits = (
    select(
        member_benefits,
        func.row_number()
        .over(
            partition_by=(_b.member_id, _b.kind.in_(bindparam("split", expanding=True))),
            order_by=_BENEFIT_ORDER,
        )
        .label("rank"),
        func.row_number().over(partition_by=_b.member_id, order_by=_BENEFIT_ORDER).label("pos"),
    )
    .where(
        _b.shop_id == bindparam("shop"),
        _b.member_id.in_(_MEMBERS),
        _b.state == UNUSED,
        or_(_b.valid_until.is_(None), _b.valid_until > bindparam("now")),
        or_(_b.valid_from.is_(None), _b.valid_from <= bindparam("now")),
    )
    .subquery()
)
# The latest records, newest first.
_ranked_records = (
    select(
        operation_records,
        func.row_number()
        .over(partition_by=_r.member_id, order_by=(_r.occur_time.desc(), _r.record_id.desc()))
        .label("pos"),
    )
    .where(_r.shop_id == bindparam("shop"), _r.member_id.in_(_MEMBERS))
    .subquery()
)
_both = union_all(
    select(
        *_shaped(_ranked_benefits.c),
        literal_column(f"'{BENEFITS}'").label("part"),
        _ranked_benefits.c.pos,
    ).where(_ranked_benefits.c.rank <= bindparam("benefit_limit")),
    select(
        *_shaped(_ranked_records.c),
        literal_column(f"'{RECORDS}'").label("part"),
        _ranked_records.c.pos,
    ).where(_ranked_records.c.pos <= bindparam("record_limit")),
).subquery()
_PAGES = select(_both).order_by(_both.c.part, _both.c.member_id, _both.c.pos)
_PART, _MEMBER = len(_NAMES), _NAMES.index("member_id")


async def page_rows(
    conn: AsyncConnection,
    shop_id: str,
    member_ids: Sequence[str],
    now: datetime,
    benefit_limit: int,
    split: Sequence[str],
    record_limit: int,
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Per member, the benefit rows and the record rows, each in page order."""
    values = {
        "shop": shop_id,
        "members": in_list(member_ids),
        "now": now,
        "split": list(split),
        "benefit_limit": benefit_limit,
        "record_limit": record_limit,
    }
    benefits: dict[str, list[Any]] = {}
    records: dict[str, list[Any]] = {}
    for row in await conn.execute(_PAGES, values):
        found = benefits if row[_PART] == BENEFITS else records
        found.setdefault(row[_MEMBER], []).append(row)
    return benefits, records


def values_of(names: Sequence[str]) -> Callable[[Any], Any]:
    """The values of these columns from a page row, in this order (rows are
    read by position: a page has many, and a name lookup costs more)."""
    return itemgetter(*(_NAMES.index(name) for name in names))


def in_list(ids: Sequence[str]) -> list[str]:
    """Ids for an `IN` list, padded (repeating the last) to a power of two,
    so that a batch's statement is one of a few texts the database and the
    driver have prepared already."""
    size = 1 << max(len(ids) - 1, 0).bit_length()
    return [*ids, *[ids[-1]] * (size - len(ids))] if ids else []
