"""Collection records: manifests and their portable data hashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.collections import portable_data_hash, validate_manifest
from ..domain.errors import Invalid, NotFound
from ..domain.principal import Principal
from ..domain.uuids import COLLECTION, new_uuid, type_of
from ..domain.validation import PDH_RE
from ..store.query import visible_collections
from ..store.schema import collections
from .context import Context
from .listing import ListParams, list_rows
from .records import plain_view

_CREATABLE = frozenset({"name", "manifest", "properties", "portable_data_hash"})


def create(ctx: Context, principal: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _CREATABLE)
    if unknown:
        raise Invalid(*(f"{name}: cannot be set when creating a collection" for name in unknown))
    manifest = validate_manifest(body.get("manifest", {}))
    pdh = portable_data_hash(manifest)
    if body.get("portable_data_hash") not in (None, pdh):
        raise Invalid(f"portable_data_hash: the manifest hashes to {pdh}, not {body['portable_data_hash']}")
    name = body.get("name") or ""
    properties = body.get("properties") or {}
    if not isinstance(name, str) or not isinstance(properties, Mapping):
        raise Invalid("name must be a string and properties an object")
    now = ctx.now()
    row = {
        "uuid": new_uuid(ctx.settings.cluster_id, COLLECTION),
        "owner_uuid": principal.user_uuid,
        "name": name,
        "portable_data_hash": pdh,
        "manifest": manifest,
        "properties": dict(properties),
        "created_at": now,
        "modified_at": now,
        "trash_at": None,
    }
    return plain_view(ctx.store.transact(lambda tx: tx.insert_collection(row)))


def get(ctx: Context, principal: Principal, uuid_or_pdh: str) -> dict[str, Any]:
    """By uuid, or by portable data hash (the oldest visible collection with that content)."""
    with ctx.store.read() as tx:
        if PDH_RE.match(uuid_or_pdh):
            where = [collections.c.portable_data_hash == uuid_or_pdh, collections.c.trash_at.is_(None)]
        elif type_of(uuid_or_pdh) == COLLECTION:
            where = [collections.c.uuid == uuid_or_pdh]
        else:
            where = None
        rows = []
        if where is not None:
            rows, _ = tx.list(collections, [*where, *visible_collections(principal)],
                              [collections.c.created_at], 1, 0, count=False)
    if not rows:
        raise NotFound(f"collection {uuid_or_pdh} not found")
    return plain_view(rows[0])


def list_collections(ctx: Context, principal: Principal, params: ListParams) -> dict[str, Any]:
    with ctx.store.read() as tx:
        return list_rows(tx, collections, params, visible_collections(principal),
                         lambda rows: [plain_view(r) for r in rows])
