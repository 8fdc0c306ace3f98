"""Fetching one object the principal may see (404 otherwise, so existence does not leak)."""

from __future__ import annotations

from ..domain.errors import Forbidden, NotFound
from ..domain.principal import Principal
from ..domain.uuids import CONTAINER, CONTAINER_REQUEST, type_of
from ..store.query import visible_containers
from ..store.repository import Repository, Row
from ..store.schema import containers


def can_see_request(principal: Principal, request: Row) -> bool:
    if principal.is_admin:
        return True
    if request["owner_uuid"] != principal.user_uuid:
        return False
    if principal.container_uuid is not None:
        return principal.container_uuid in (request["requesting_container_uuid"], request["container_uuid"])
    return True


def visible_request(tx: Repository, principal: Principal, uuid: str, for_update: bool = False) -> Row:
    request = tx.get_request(uuid, for_update) if type_of(uuid) == CONTAINER_REQUEST else None
    if request is None or not can_see_request(principal, request):
        raise NotFound(f"container request {uuid} not found")
    return request


def writable_request(tx: Repository, principal: Principal, uuid: str) -> Row:
    """A request the principal may change: a container token only changes the requests its container made."""
    request = visible_request(tx, principal, uuid, for_update=True)
    if principal.is_container and request["requesting_container_uuid"] != principal.container_uuid:
        raise Forbidden("a container token may only change the requests its container made")
    return request


def can_see_container(tx: Repository, principal: Principal, uuid: str) -> bool:
    if principal.is_admin or principal.container_uuid == uuid:
        return True
    return tx.exists(containers, [containers.c.uuid == uuid, *visible_containers(principal)])


def visible_container(tx: Repository, principal: Principal, uuid: str, for_update: bool = False) -> Row:
    container = tx.get_container(uuid, for_update) if type_of(uuid) == CONTAINER else None
    if container is None or not can_see_container(tx, principal, uuid):
        raise NotFound(f"container {uuid} not found")
    return container
