"""Collection records: manifests and their portable data hashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.collections import portable_data_hash, validate_manifest
from ..domain.errors import Invalid, NotFound
from ..domain.principal import Principal
from ..domain.uuids import COLLECTION, new_uuid, type_of
from ..domain.validation import PDH_RE
from ..files import FileBlobStore
from ..settings import Settings
from ..store.query import visible_collections
from ..store.repository import Repository, Row
from ..store.schema import collections
from .context import Context
from .listing import ListParams, list_rows
from .records import plain_view

_CREATABLE = frozenset({"name", "manifest", "properties", "portable_data_hash"})
_MAX_PROBLEMS = 20


def create(ctx: Context, principal: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _CREATABLE)
    if unknown:
        raise Invalid(*(f"{name}: cannot be set when creating a collection" for name in unknown))
    name = body.get("name") or ""
    properties = body.get("properties") or {}
    if not isinstance(name, str) or not isinstance(properties, Mapping):
        raise Invalid("name must be a string and properties an object")
    row = new_row(ctx, principal, body.get("manifest", {}), name, properties)
    pdh = row["portable_data_hash"]
    if body.get("portable_data_hash") not in (None, pdh):
        raise Invalid(f"portable_data_hash: the manifest hashes to {pdh}, not {body['portable_data_hash']}")
    return plain_view(ctx.store.transact(lambda tx: tx.insert_collection(row)))


def new_row(ctx: Context, principal: Principal, manifest: Any, name: str,
            properties: Mapping[str, Any] | None = None, field: str = "manifest") -> dict[str, Any]:
    """A collection record for `manifest`, checked (a valid manifest whose blobs are all stored),
    for the caller's transaction to insert. Problems name the manifest `field`."""
    try:
        manifest = validate_manifest(manifest)
        _require_blobs(ctx.settings, manifest)
    except Invalid as error:
        raise Invalid(*(field + message.removeprefix("manifest") for message in error.messages)) from None
    now = ctx.now()
    return {
        "uuid": new_uuid(ctx.settings.cluster_id, COLLECTION),
        "owner_uuid": principal.user_uuid,
        "name": name,
        "portable_data_hash": portable_data_hash(manifest),
        "manifest": manifest,
        "properties": dict(properties or {}),
        "created_at": now,
        "modified_at": now,
        "trash_at": None,
    }


def _require_blobs(settings: Settings, manifest: Mapping[str, Any]) -> None:
    """Every file's blob is stored, with the size the manifest says (no blob root: not checked)."""
    if settings.blob_root is None:
        return
    blobs = FileBlobStore(settings.blob_root, read_only=True)
    sizes: dict[str, int | None] = {}
    problems = []
    for path, entry in manifest.items():
        if path.endswith("/"):
            continue
        blob = entry["blob"]
        if blob not in sizes:
            sizes[blob] = blobs.size(blob)
        if sizes[blob] is None:
            problems.append(f"manifest[{path!r}]: blob {blob} is not in the blob store (PUT it to /blobs/{blob} first)")
        elif sizes[blob] != entry["size"]:
            problems.append(f"manifest[{path!r}]: size {entry['size']} but blob {blob} has {sizes[blob]} bytes")
    if len(problems) > _MAX_PROBLEMS:
        more = len(problems) - _MAX_PROBLEMS
        problems[_MAX_PROBLEMS:] = [f"... and {more} more files with missing blobs or wrong sizes"]
    if problems:
        raise Invalid(*problems)


def get(ctx: Context, principal: Principal, uuid_or_pdh: str) -> dict[str, Any]:
    """By uuid, or by portable data hash (the oldest visible collection with that content)."""
    with ctx.store.read() as tx:
        row = find(tx, principal, uuid_or_pdh)
    if row is None:
        raise NotFound(f"collection {uuid_or_pdh} not found")
    return plain_view(row)


def find(tx: Repository, principal: Principal, uuid_or_pdh: str) -> Row | None:
    """The collection `get` answers with, or None when there is none the principal may see."""
    if PDH_RE.match(uuid_or_pdh):
        where = [collections.c.portable_data_hash == uuid_or_pdh, collections.c.trash_at.is_(None)]
    elif type_of(uuid_or_pdh) == COLLECTION:
        where = [collections.c.uuid == uuid_or_pdh]
    else:
        return None
    rows, _ = tx.list(collections, [*where, *visible_collections(principal)], [collections.c.created_at], 1, 0,
                      count=False)
    return rows[0] if rows else None


def file_of(ctx: Context, principal: Principal, uuid_or_pdh: str, path: str) -> tuple[str, int]:
    """(blob, size) of one file of a visible collection: what a download reads."""
    with ctx.store.read() as tx:
        row = find(tx, principal, uuid_or_pdh)
    entry = (row["manifest"] if row else {}).get(path)
    if entry is None or path.endswith("/"):
        raise NotFound(f"collection {uuid_or_pdh} has no file {path!r}")
    return entry["blob"], entry["size"]


def list_collections(ctx: Context, principal: Principal, params: ListParams) -> dict[str, Any]:
    with ctx.store.read() as tx:
        return list_rows(tx, collections, params, visible_collections(principal),
                         lambda rows: [plain_view(r) for r in rows])
