"""/arvados/v1/dispatchers, /collections, /config and /users/current."""

from __future__ import annotations

from typing import Any

from ...services import collections, dispatchers
from ..deps import ContextDep, ListDep, PrincipalDep
from ..routing import ServiceRouter
from ..schemas import CollectionBody, DispatcherBody

router = ServiceRouter(prefix="/arvados/v1")


@router.get("/config", tags=["config"])
def config(ctx: ContextDep) -> dict[str, Any]:
    """What clients must know about this cluster (no token needed)."""
    s = ctx.settings
    return {
        "cluster_id": s.cluster_id,
        "container_engines": list(s.container_engines),
        "default_container_count_max": s.default_container_count_max,
        "max_container_count_max": s.max_container_count_max,
        "max_dispatch_attempts": s.max_dispatch_attempts,
        "container_heartbeat_timeout": s.container_heartbeat_timeout.total_seconds(),
        "blob_store_url": s.blob_store_url,
        "api_version": "v1",
        # A collection mount may carry its `manifest`: saved with the request (cwl-crunch's runner
        # then stages a step's files without a call of their own).
        "mount_manifests": True,
        # `PUT containers/scheduling_status` sets many containers' scheduling status at once.
        "batch_scheduling_status": True,
    }


@router.get("/users/current", tags=["users"])
def current_user(principal: PrincipalDep) -> dict[str, Any]:
    return {
        "uuid": principal.user_uuid,
        "is_admin": principal.is_admin,
        "token_uuid": principal.token_uuid,
        "container_uuid": principal.container_uuid,
    }


@router.post("/dispatchers", tags=["dispatchers"])
def register_dispatcher(body: DispatcherBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return dispatchers.register(ctx, principal, body.fields())


@router.get("/dispatchers/{uuid}", tags=["dispatchers"])
def get_dispatcher(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return dispatchers.get(ctx, principal, uuid)


@router.post("/dispatchers/{uuid}/ping", tags=["dispatchers"])
def ping_dispatcher(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return dispatchers.ping(ctx, principal, uuid)


@router.post("/collections", tags=["collections"])
def create_collection(body: CollectionBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return collections.create(ctx, principal, body.fields())


@router.get("/collections", tags=["collections"])
def list_collections(ctx: ContextDep, principal: PrincipalDep, params: ListDep) -> dict[str, Any]:
    return collections.list_collections(ctx, principal, params)


@router.get("/collections/{uuid_or_pdh}", tags=["collections"])
def get_collection(uuid_or_pdh: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return collections.get(ctx, principal, uuid_or_pdh)
