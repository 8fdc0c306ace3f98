"""/arvados/v1/container_requests"""

from __future__ import annotations

from typing import Any

from ...services import requests, reuse
from ..deps import ContextDep, ListDep, PrincipalDep
from ..routing import ServiceRouter
from ..schemas import ContainerRequestBody

router = ServiceRouter(prefix="/arvados/v1/container_requests", tags=["container_requests"])


@router.post("", status_code=200)
def create(body: ContainerRequestBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.create(ctx, principal, body.fields())


@router.get("")
def list_requests(ctx: ContextDep, principal: PrincipalDep, params: ListDep) -> dict[str, Any]:
    return requests.list_requests(ctx, principal, params)


@router.post("/explain_reuse")
def explain_reuse(body: ContainerRequestBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return reuse.explain_definition(ctx, principal, body.fields())


@router.get("/{uuid}")
def get(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.get(ctx, principal, uuid)


@router.put("/{uuid}")
@router.patch("/{uuid}")
def update(uuid: str, body: ContainerRequestBody, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.update(ctx, principal, uuid, body.fields())


@router.delete("/{uuid}")
def delete(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.delete(ctx, principal, uuid)


@router.get("/{uuid}/container_status")
def container_status(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.container_status(ctx, principal, uuid)


@router.get("/{uuid}/reuse")
def explain_request_reuse(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return reuse.explain_request(ctx, principal, uuid)


@router.post("/{uuid}/hold")
def hold(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.hold(ctx, principal, uuid)


@router.post("/{uuid}/release")
def release(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.release(ctx, principal, uuid)


@router.post("/{uuid}/retry")
def retry(uuid: str, ctx: ContextDep, principal: PrincipalDep) -> dict[str, Any]:
    return requests.retry(ctx, principal, uuid)
