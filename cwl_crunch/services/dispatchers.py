"""Dispatcher registration and liveness pings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.errors import Forbidden, Invalid, NotFound
from ..domain.principal import Principal
from ..domain.uuids import DISPATCHER, new_uuid, type_of
from ..store.repository import Repository, Row
from .context import Context
from .records import plain_view

# Longest value of each field (the sizes of the database columns).
_FIELDS = {"name": 255, "hostname": 255, "backend": 32}


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("only admin tokens may act as dispatchers")


def register(ctx: Context, principal: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
    _require_admin(principal)
    unknown = sorted(set(body) - set(_FIELDS))
    bad = [f"{name}: must be a string of at most {limit} characters" for name, limit in _FIELDS.items()
           if name in body and (not isinstance(body[name], str) or len(body[name]) > limit)]
    if unknown or bad:
        raise Invalid(*[f"{name}: unknown attribute" for name in unknown], *bad)
    now = ctx.now()
    row = {
        "uuid": new_uuid(ctx.settings.cluster_id, DISPATCHER),
        **{name: body.get(name, "") for name in _FIELDS},
        "token_uuid": principal.token_uuid,
        "alive": True,
        "created_at": now,
        "last_ping_at": now,
    }
    return plain_view(ctx.store.transact(lambda tx: tx.insert_dispatcher(row)))


def ping(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    _require_admin(principal)

    def work(tx: Repository) -> Row:
        dispatcher = _find(tx, uuid)
        changes = {"last_ping_at": ctx.now(), "alive": True}
        tx.update_dispatcher(uuid, changes)
        return {**dispatcher, **changes}

    return plain_view(ctx.store.transact(work))


def get(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    _require_admin(principal)
    with ctx.store.read() as tx:
        return plain_view(_find(tx, uuid))


def _find(tx: Repository, uuid: str) -> Row:
    # Only a well-formed uuid reaches the database (PostgreSQL refuses NUL characters).
    dispatcher = tx.get_dispatcher(uuid) if type_of(uuid) == DISPATCHER else None
    if dispatcher is None:
        raise NotFound(f"dispatcher {uuid} not found")
    return dispatcher
