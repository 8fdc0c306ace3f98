"""List queries: SPEC §2 filters, order, select, and who may see what."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Table,
    exists,
    false,
    or_,
)
from sqlalchemy.sql.elements import UnaryExpression

from ..domain.errors import Invalid
from ..domain.principal import Principal
from ..domain.uuids import TYPE_OF_KIND
from ..domain.validation import parse_time
from .schema import (
    UTCDateTime,
    collections,
    container_requests,
    containers,
    request_containers,
)

OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "is_a", "exists"})
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_INT64 = 2**63 - 1
_INT32 = 2**31 - 1
_COMPARISONS = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# Never filterable or orderable: secrets and internals.
HIDDEN = frozenset({"secret_mounts", "runtime_token", "auth", "secret_hash", "reuse_digests", "held"})


def parse_json_param(name: str, raw: str | None, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    try:
        value = json.loads(raw)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot reach the database
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise Invalid(f"{name}: not valid JSON (or not valid Unicode)") from None
    return value


def build_filters(table: Table, filters: object) -> list[ColumnElement[bool]]:
    if not isinstance(filters, list):
        raise Invalid("filters: must be a list of [attribute, operator, operand]")
    return [_one_filter(table, f) for f in filters]


def _column(table: Table, name: object, what: str = "filters") -> Any:
    if not isinstance(name, str) or name in HIDDEN or name not in table.c:
        raise Invalid(f"{what}: unknown attribute {name!r}")
    return table.c[name]


def _one_filter(table: Table, item: object) -> ColumnElement[bool]:
    if not isinstance(item, list) or len(item) != 3 or not isinstance(item[1], str):
        raise Invalid("filters: each filter must be [attribute, operator, operand]")
    attribute, op, operand = item
    if op not in OPERATORS:
        raise Invalid(f"filters: unknown operator {op!r}")
    if isinstance(attribute, str) and "." in attribute:
        return _json_key_filter(table, attribute, op, operand)
    column = _column(table, attribute)
    if op == "exists":
        if not isinstance(column.type, JSON) or not isinstance(operand, str):
            raise Invalid(f"filters: exists needs a JSON attribute and a key, got {attribute!r}")
        return column[_json_key(operand)].is_not(None)
    if isinstance(column.type, JSON):
        raise Invalid(f"filters: {attribute} can only be tested with exists or attribute.key")
    if op == "is_a":
        return _is_a(column, operand)
    if op in ("in", "not in"):
        if not isinstance(operand, list):
            raise Invalid(f"filters: {op} needs a list operand")
        values = [_coerce(column, v) for v in operand]
        return column.in_(values) if op == "in" else column.not_in(values)
    value = _coerce(column, operand)
    if op == "like":
        if not isinstance(value, str):
            raise Invalid("filters: like needs a string operand")
        if (len(value) - len(value.rstrip("\\"))) % 2:  # PostgreSQL refuses a dangling escape character
            raise Invalid("filters: a like pattern must not end with a lone backslash")
        return column.like(value)
    if value is None or isinstance(value, bool):
        if op not in ("=", "!="):
            raise Invalid(f"filters: {json.dumps(value)} can only be compared with = or !=")
        if value is None:
            return column.is_(None) if op == "=" else column.is_not(None)
    return _COMPARISONS[op](column, value)


def _json_key_filter(table: Table, attribute: str, op: str, operand: object) -> ColumnElement[bool]:
    name, _, key = attribute.partition(".")
    column = _column(table, name)
    if not isinstance(column.type, JSON) or not key:
        raise Invalid(f"filters: {attribute!r} is not a key of a JSON attribute")
    key = _json_key(key)
    if op == "exists":
        return column[key].is_not(None)
    if op not in ("=", "!=") or not isinstance(operand, str) or "\0" in operand:
        raise Invalid(f"filters: {attribute} can only be compared with = or != to a string")
    text = column[key].as_string()
    return text == operand if op == "=" else or_(text != operand, text.is_(None))


def _json_key(key: str) -> str:
    """A key both dialects can look up: SQLite's JSON paths cannot quote `"`, PostgreSQL has no NUL."""
    if not key or len(key) > 255 or '"' in key or "\0" in key:
        raise Invalid(f"filters: {key!r} is not a usable key (1 to 255 characters, no double quote or NUL)")
    return key


def _is_a(column: Any, operand: object) -> ColumnElement[bool]:
    kinds = operand if isinstance(operand, list) else [operand]
    infixes = []
    for kind in kinds:
        infix = TYPE_OF_KIND.get(kind) if isinstance(kind, str) else None
        if infix is None:
            raise Invalid(f"filters: is_a needs a kind like 'arvados#container', got {kind!r}")
        infixes.append(column.like(f"_____-{infix}-%"))
    return or_(*infixes) if infixes else false()


def _coerce(column: Any, value: object) -> Any:
    """Check the operand's type against the column's, so the database never sees a mismatch."""
    if value is None:
        return None
    ctype = column.type
    name = column.name
    if isinstance(ctype, Boolean):
        if isinstance(value, bool):
            return value
    elif isinstance(ctype, Integer):  # BigInteger included; PostgreSQL refuses values out of the column's range
        limit = _INT64 if isinstance(ctype, BigInteger) else _INT32
        if isinstance(value, int) and not isinstance(value, bool) and -limit - 1 <= value <= limit:
            return value
    elif isinstance(ctype, Float):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e300:
            return float(value)
    elif isinstance(ctype, UTCDateTime):
        parsed = parse_time(value)
        if parsed is None:
            raise Invalid(f"filters: {name} needs an ISO 8601 time")
        return parsed
    elif isinstance(value, str) and "\0" not in value:
        return value
    raise Invalid(f"filters: {value!r} is not a valid value for {name}")


def build_order(table: Table, order: object, default: Sequence[str]) -> list[UnaryExpression[Any] | Any]:
    if order is None or order == []:
        order = list(default)
    if isinstance(order, str):
        order = [part.strip() for part in order.split(",")]
    if not isinstance(order, list) or not all(isinstance(o, str) for o in order):
        raise Invalid("order: must be a list like [\"created_at desc\"]")
    clauses = []
    for item in order:
        name, _, direction = item.strip().partition(" ")
        column = _column(table, name, "order")
        if isinstance(column.type, JSON):
            raise Invalid(f"order: cannot order by {name}")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise Invalid(f"order: direction must be asc or desc, got {direction!r}")
        clauses.append(column.desc() if direction == "desc" else column.asc())
    clauses.append(table.c.uuid.asc())  # stable paging
    return clauses


def check_page(limit: object, offset: object) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit: must be an integer from 0 to {MAX_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _INT64:
        raise Invalid("offset: must be a non-negative integer")
    return limit, offset


def check_select(table: Table, fields: object) -> list[str] | None:
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise Invalid("select: must be a list of attribute names")
    return fields


# -- visibility ------------------------------------------------------------------------


def visible_requests(principal: Principal) -> list[ColumnElement[bool]]:
    r = container_requests.c
    if principal.is_admin:
        return []
    own = r.owner_uuid == principal.user_uuid
    if principal.container_uuid is not None:
        return [own, or_(r.requesting_container_uuid == principal.container_uuid, r.container_uuid == principal.container_uuid)]
    return [own]


def visible_containers(principal: Principal) -> list[ColumnElement[bool]]:
    """Containers some request the principal sees has had: a correlated EXISTS, probed per
    container by index. `uuid IN (the containers of all the user's requests)` cost a walk of the
    user's whole history for every container read (4 ms per GET after 1,200 requests)."""
    if principal.is_admin:
        return []
    rc, r = request_containers.c, container_requests.c
    reached = exists().where(rc.container_uuid == containers.c.uuid,
                             exists().where(r.uuid == rc.request_uuid, *visible_requests(principal)))
    if principal.container_uuid is not None:
        return [or_(containers.c.uuid == principal.container_uuid, reached)]
    return [reached]


def visible_collections(principal: Principal) -> list[ColumnElement[bool]]:
    if principal.is_admin:
        return []
    return [collections.c.owner_uuid == principal.user_uuid]


def visible_objects(principal: Principal, uuid_column: Any) -> list[ColumnElement[bool]]:
    """Events and similar rows keyed by an object uuid: visible if the object is.

    Correlated EXISTS rather than `IN (subquery)`: the database then walks the few new rows (the
    event stream asks for `id > since`) and checks each by primary key, instead of probing once per
    request the user ever made, which grew with the history on every poll.
    """
    if principal.is_admin:
        return []
    r, rc = container_requests.c, request_containers.c
    alternatives = [
        exists().where(r.uuid == uuid_column, *visible_requests(principal)),
        exists().where(rc.container_uuid == uuid_column,
                       exists().where(r.uuid == rc.request_uuid, *visible_requests(principal))),
    ]
    if principal.container_uuid is not None:
        alternatives.append(uuid_column == principal.container_uuid)
    return [or_(*alternatives)]
