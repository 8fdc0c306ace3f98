"""The shared shape of list endpoints: filters, order, paging, select (SPEC §2).

`views` turns a page of rows into public records at once, so related rows can be fetched in
one query rather than one per item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table

from ..store import query
from ..store.repository import Repository, Row
from .records import select_fields


@dataclass(frozen=True)
class ListParams:
    filters: object = None
    order: object = None
    limit: object = query.DEFAULT_LIMIT
    offset: object = 0
    select: object = None
    count: bool = True


def list_rows(
    tx: Repository,
    table: Table,
    params: ListParams,
    visibility: Sequence[ColumnElement[bool]],
    views: Callable[[list[Row]], list[dict[str, Any]]],
    default_order: Sequence[str] = ("created_at desc",),
    known: Sequence[str] | None = None,
) -> dict[str, Any]:
    where = [*query.build_filters(table, params.filters or []), *visibility]
    order = query.build_order(table, params.order, default_order)
    limit, offset = query.check_page(params.limit, params.offset)
    fields = query.check_select(table, params.select)
    rows, available = tx.list(table, where, order, limit, offset, count=params.count)
    names = known if known is not None else [c.name for c in table.c]
    items = [select_fields(item, fields, names) for item in views(rows)]
    return {"items": items, "items_available": available, "offset": offset, "limit": limit}
