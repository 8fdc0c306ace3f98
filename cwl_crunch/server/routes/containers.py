"""/arvados/v1/containers"""

from __future__ import annotations

from typing import Any

from ...services import containers, logs
from ..deps import ContextDep, ListDep, PrincipalDep
from ..routing import ServiceRouter
from ..schemas import ContainerUpdateBody, LiveLogBody, LockBody, SchedulingStatusBody, SchedulingStatusesBody

router = ServiceRouter(prefix="/arvados/v1/containers", tags=["containers"])


@router.get("")
def list_containers(ctx: ContextDep, principal: PrincipalDep, params: ListDep) -> dict[str, Any]:
    return containers.list_containers(ctx, principal, params)


@router.get("/current")
def current(ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.current(ctx, principal)


@router.put("/scheduling_status")
def scheduling_statuses(body: SchedulingStatusesBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    """Many containers' scheduling status at once (a dispatcher's round): {"updated": [uuid, ...],
    "skipped": {uuid: why}}."""
    return containers.set_scheduling_statuses(ctx, principal, body.statuses)


@router.get("/{uuid}")
def get(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.get(ctx, principal, uuid)


@router.put("/{uuid}")
@router.patch("/{uuid}")
def update(uuid: str, body: ContainerUpdateBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.update(ctx, principal, uuid, body.fields())


@router.post("/{uuid}/lock")
def lock(uuid: str, ctx: ContextDep, principal: PrincipalDep, body: LockBody | None = None) -> dict[str, Any]:
    return containers.lock(ctx, principal, uuid, body.dispatcher_uuid if body else None)


@router.post("/{uuid}/unlock")
def unlock(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.unlock(ctx, principal, uuid)


@router.post("/{uuid}/heartbeat")
def heartbeat(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.heartbeat(ctx, principal, uuid)


@router.put("/{uuid}/scheduling_status")
def scheduling_status(uuid: str, body: SchedulingStatusBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.set_scheduling_status(ctx, principal, uuid, body.scheduling_status)


@router.post("/{uuid}/log")
def append_log(uuid: str, body: LiveLogBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    """crunch-run's live log lines (SPEC §7): kept until the log collection is saved."""
    return logs.append(ctx, principal, uuid, body.files)


@router.get("/{uuid}/secret_mounts")
def secret_mounts(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return containers.secret_mounts(ctx, principal, uuid)
