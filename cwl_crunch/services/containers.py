"""Container use cases for dispatchers and crunch-run: lock, unlock, update, heartbeat."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..domain import runtime_status
from ..domain.attributes import (
    CONTAINER_TOKEN_WRITABLE,
    require_container_update,
    require_writable,
)
from ..domain.errors import Forbidden, Invalid, LockConflict, NotFound
from ..domain.principal import Principal
from ..domain.states import (
    LOCKED_STATUS,
    ContainerState,
    parse_container_state,
    require_container_transition,
)
from ..domain.uuids import UUID_RE
from ..domain.validation import PDH_RE, parse_time
from ..store.query import visible_containers
from ..store.repository import Repository, Row
from ..store.schema import containers
from . import collections, lifecycle
from .access import visible_container
from .auth import issue_token
from .context import Context
from .listing import ListParams, list_rows
from .records import container_view

CLIENT_ATTRIBUTES = frozenset(
    {"state", "runtime_status", "progress", "log", "output", "output_properties", "exit_code", "cost",
     "subrequests_cost", "scheduling_status"}
)
# A container update may carry the output and log manifests themselves instead of the portable
# data hashes of collections saved before: each is saved as a collection in the update's own
# transaction and its hash becomes `output` / `log`. crunch-run's final state is then one call
# instead of three (SPEC §7 step 7), and the collections exist exactly when the state they belong
# to does.
MANIFEST_ATTRIBUTES = {"output_manifest": ("output", "output for"), "log_manifest": ("log", "log for")}
_INT32 = 2**31


def get(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    with ctx.store.read() as tx:
        return container_view(visible_container(tx, principal, uuid), principal)


def current(ctx: Context, principal: Principal) -> dict[str, Any]:
    if principal.container_uuid is None:
        raise NotFound("this token does not belong to a container")
    return get(ctx, principal, principal.container_uuid)


def list_containers(ctx: Context, principal: Principal, params: ListParams) -> dict[str, Any]:
    with ctx.store.read() as tx:
        known = [*(c.name for c in containers.c if c.name not in ("secret_mounts", "reuse_digests", "command_digest", "has_error")),
                 "has_secret_mounts"]
        return list_rows(tx, containers, params, visible_containers(principal),
                         lambda rows: [container_view(r, principal) for r in rows], known=known)


def _check_values(patch: Mapping[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    progress = patch.get("progress")
    if progress is not None and (isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 1):
        problems.append("progress: must be a number from 0 to 1")
    exit_code = patch.get("exit_code")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int) or not -_INT32 <= exit_code < _INT32):
        problems.append("exit_code: must be an integer")
    for name in ("cost", "subrequests_cost"):
        value = patch.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf):
            problems.append(f"{name}: must be a non-negative number")
    for name in ("log", "output"):
        value = patch.get(name)
        if value is not None and (not isinstance(value, str) or not PDH_RE.match(value)):
            problems.append(f"{name}: must be a portable data hash")
    if "output_properties" in patch and not isinstance(patch["output_properties"], Mapping):
        problems.append("output_properties: must be an object")
    if "scheduling_status" in patch and not isinstance(patch["scheduling_status"], str):
        problems.append("scheduling_status: must be a string")
    if problems:
        raise Invalid(*problems)
    return dict(patch)


def update(ctx: Context, principal: Principal, uuid: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """Write attributes and/or change state, as the per-state tables allow."""
    require_writable(patch, CLIENT_ATTRIBUTES | MANIFEST_ATTRIBUTES.keys(), "on a container")
    patch, saved = _collections_of(ctx, principal, uuid, patch)
    patch = _check_values(patch)
    if "runtime_status" in patch:
        patch["runtime_status"] = runtime_status.validate_patch(patch["runtime_status"])

    def work(tx: Repository) -> Row:
        container = visible_container(tx, principal, uuid, for_update=True)
        old = ContainerState(container["state"])
        new = parse_container_state(patch.get("state", old.value))
        _authorize_update(principal, container, old, new, patch)
        if (old, new) in ((ContainerState.QUEUED, ContainerState.LOCKED), (ContainerState.LOCKED, ContainerState.QUEUED)):
            if saved:
                raise Invalid(f"{', '.join(sorted(MANIFEST_ATTRIBUTES))}: cannot be given when locking or unlocking")
            if new == ContainerState.LOCKED:
                return _lock(tx, ctx, principal, container, None)
            return _unlock(tx, ctx, principal, container)
        if old != new:
            require_container_transition(old, new)
        require_container_update(old, new, patch)
        for row in saved:
            tx.insert_collection(row)
        return _apply(tx, ctx, container, new, patch)

    return container_view(ctx.store.transact(work), principal)


def _collections_of(ctx: Context, principal: Principal, uuid: str,
                    patch: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`patch` with each manifest attribute replaced by its collection's portable data hash, and
    those collections' records (checked, not yet inserted)."""
    patch, saved = dict(patch), []
    for field, (attribute, label) in MANIFEST_ATTRIBUTES.items():
        if field not in patch:
            continue
        row = collections.new_row(ctx, principal, patch.pop(field), f"{label} {uuid}", field=field)
        pdh = row["portable_data_hash"]
        if patch.get(attribute) not in (None, pdh):
            raise Invalid(f"{attribute}: {patch[attribute]} is not the hash of {field} ({pdh})")
        patch[attribute] = pdh
        saved.append(row)
    return patch, saved


def _authorize_update(principal: Principal, container: Row, old: ContainerState, new: ContainerState, patch: Mapping[str, Any]) -> None:
    if principal.is_container:
        if principal.container_uuid != container["uuid"]:
            raise Forbidden("a container token may only update its own container")
        require_writable(patch, CONTAINER_TOKEN_WRITABLE, "with a container token")
        if old != ContainerState.RUNNING:
            raise Invalid(f"a container token may only update its container while Running, not {old.value}")
    elif not principal.is_admin:
        raise Forbidden("only admin (dispatcher) tokens may update containers")
    elif (
        old in (ContainerState.LOCKED, ContainerState.RUNNING)
        and new != ContainerState.CANCELLED
        and container["locked_by_uuid"] != principal.token_uuid
    ):
        # One dispatcher (and its crunch-run) drives a container; anyone else may only cancel it.
        raise Forbidden(f"container {container['uuid']} is locked by another token; only cancelling is allowed")


def _apply(tx: Repository, ctx: Context, container: Row, new: ContainerState, patch: Mapping[str, Any]) -> Row:
    now = ctx.now()
    changes = {k: v for k, v in patch.items() if k != "state"}
    changes["state"] = new.value
    if "runtime_status" in patch:
        changes["runtime_status"] = runtime_status.merge(container["runtime_status"], patch["runtime_status"])
    if new == ContainerState.RUNNING and container["state"] != new.value:
        changes.update(started_at=now, heartbeat_at=now, scheduling_status="")
    if new == ContainerState.COMPLETE and changes.get("exit_code", container["exit_code"]) is None:
        raise Invalid("exit_code: required to complete a container")
    finishing = new.is_final and container["state"] != new.value
    if finishing:
        changes.update(lifecycle.final_changes(now))
    details = lifecycle.result_details(tx, container, changes) if finishing and new == ContainerState.COMPLETE else None
    updated = tx.update_container(container, changes, now, details)
    if finishing:
        if updated["log"]:  # the log collection is saved: the live copy has served its purpose
            tx.delete_live_logs(updated["uuid"])
        lifecycle.container_finished(tx, ctx, updated, now)
    return updated


def lock(ctx: Context, principal: Principal, uuid: str, dispatcher_uuid: str | None = None) -> dict[str, Any]:
    if not principal.is_admin:
        raise Forbidden("only admin (dispatcher) tokens may lock containers")
    if dispatcher_uuid is not None and not (isinstance(dispatcher_uuid, str) and UUID_RE.match(dispatcher_uuid)):
        raise Invalid("dispatcher_uuid: not a uuid")

    def work(tx: Repository) -> Row:
        if dispatcher_uuid is not None:
            _dispatcher_alive(tx, ctx, dispatcher_uuid)
        container = visible_container(tx, principal, uuid, for_update=True)
        return _lock(tx, ctx, principal, container, dispatcher_uuid)

    return container_view(ctx.store.transact(work), principal)


# How stale a live dispatcher's last ping may be left by a lock (its timeout is a minute).
PING_RESOLUTION = timedelta(seconds=1)


def _dispatcher_alive(tx: Repository, ctx: Context, dispatcher_uuid: str) -> None:
    """Only a registered dispatcher's locks are reclaimed when it dies; locking counts as a ping,
    so a dispatcher declared dead earlier is watched again. A live dispatcher's ping is not
    rewritten within PING_RESOLUTION: a scatter locks hundreds of containers a second."""
    dispatcher = tx.get_dispatcher(dispatcher_uuid)
    if dispatcher is None:
        raise Invalid(f"dispatcher_uuid: {dispatcher_uuid} is not a registered dispatcher")
    now = ctx.now()
    if not dispatcher["alive"] or now - dispatcher["last_ping_at"] >= PING_RESOLUTION:
        tx.update_dispatcher(dispatcher_uuid, {"alive": True, "last_ping_at": now})


def _lock(tx: Repository, ctx: Context, principal: Principal, container: Row, dispatcher_uuid: str | None) -> Row:
    now = ctx.now()
    if container["state"] != ContainerState.QUEUED.value:
        raise LockConflict(f"cannot lock container {container['uuid']}: it is {container['state']}, not Queued")
    if container["priority"] <= 0:
        raise LockConflict(f"cannot lock container {container['uuid']}: its priority is 0")
    not_before = parse_time((container["scheduling_parameters"] or {}).get("not_before"))
    if not_before is not None and not_before > now:
        raise LockConflict(f"cannot lock container {container['uuid']} before {not_before.isoformat()}")
    owner = tx.committed_requests_for(container["uuid"])
    user_uuid = max(owner, key=lambda r: r["priority"])["owner_uuid"] if owner else principal.user_uuid
    _, secret = issue_token(tx, ctx.settings.cluster_id, user_uuid, now, container_uuid=container["uuid"])
    changes = {
        "state": ContainerState.LOCKED.value,
        "locked_by_uuid": principal.token_uuid,
        "dispatcher_uuid": dispatcher_uuid,
        "lock_count": container["lock_count"] + 1,
        "auth": secret,
        # What every dispatcher would publish next (SPEC §6), in the same write: one call and one
        # event fewer per container. A dispatcher with more to say (a Slurm queue) says it after.
        "scheduling_status": LOCKED_STATUS,
    }
    return tx.update_container(container, changes, now)


def unlock(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    if not principal.is_admin:
        raise Forbidden("only admin (dispatcher) tokens may unlock containers")

    def work(tx: Repository) -> Row:
        container = visible_container(tx, principal, uuid, for_update=True)
        return _unlock(tx, ctx, principal, container)

    return container_view(ctx.store.transact(work), principal)


def _unlock(tx: Repository, ctx: Context, principal: Principal, container: Row) -> Row:
    if container["state"] != ContainerState.LOCKED.value:
        raise LockConflict(f"cannot unlock container {container['uuid']}: it is {container['state']}, not Locked")
    if container["locked_by_uuid"] != principal.token_uuid:
        raise LockConflict(f"cannot unlock container {container['uuid']}: it was locked by another token")
    now = ctx.now()
    limit = ctx.settings.max_dispatch_attempts
    if container["lock_count"] >= limit:
        error = (
            "Failed to start container. Cancelled after exceeding max_dispatch_attempts "
            f"(lock_count={container['lock_count']})"
        )
        status = runtime_status.merge(container["runtime_status"], {"error": error, "cause": "infrastructure"})
        changes = {**lifecycle.final_changes(now), "state": ContainerState.CANCELLED.value, "runtime_status": status}
        cancelled = tx.update_container(container, changes, now)
        lifecycle.container_finished(tx, ctx, cancelled, now)
        return cancelled
    tx.delete_container_tokens(container["uuid"])
    return tx.update_container(container, lifecycle.unlock_changes(), now)


def secret_mounts(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    """The secret mounts, for the crunch-run of a Locked/Running container (its locking token)."""
    with ctx.store.read() as tx:
        container = visible_container(tx, principal, uuid)
    if not principal.is_admin or container["locked_by_uuid"] != principal.token_uuid:
        raise Forbidden(f"only the token that locked container {uuid} may read its secret mounts")
    if container["state"] not in (ContainerState.LOCKED.value, ContainerState.RUNNING.value):
        raise Invalid(f"secret_mounts: container {uuid} is {container['state']}, not Locked or Running")
    return {"uuid": uuid, "secret_mounts": container["secret_mounts"] or {}}


def heartbeat(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    """crunch-run is alive and so is its container's process."""

    def work(tx: Repository) -> Row:
        container = visible_container(tx, principal, uuid, for_update=True)
        if not (principal.is_admin or principal.container_uuid == uuid):
            raise Forbidden("only the dispatcher or the container itself may send heartbeats")
        if container["state"] != ContainerState.RUNNING.value:
            raise Invalid(f"heartbeat: container {uuid} is {container['state']}, not Running")
        now = ctx.now()
        tx.touch_heartbeat(uuid, now)
        return {**container, "heartbeat_at": now}

    return container_view(ctx.store.transact(work), principal)


SCHEDULING_STATUS_MAX_CHARS = 4096
SCHEDULING_STATUS_BATCH_MAX = 1000  # containers in one `set_scheduling_statuses` call


def set_scheduling_status(ctx: Context, principal: Principal, uuid: str, text: object) -> dict[str, Any]:
    if not _status_text(text):
        raise Invalid(f"scheduling_status: must be a string of at most {SCHEDULING_STATUS_MAX_CHARS} characters")
    return update(ctx, principal, uuid, {"scheduling_status": text})


def set_scheduling_statuses(ctx: Context, principal: Principal, statuses: object) -> dict[str, Any]:
    """Many containers' scheduling status in one transaction: what a dispatcher's round found out
    about its whole queue. Each container is checked as its own update would be; one that cannot
    take its status any more (gone, or locked by another dispatcher meanwhile) is skipped, with
    the reason, and the others are written. A malformed body writes nothing."""
    if not principal.is_admin:
        raise Forbidden("only admin (dispatcher) tokens may set scheduling status")
    if not isinstance(statuses, Mapping) or not 0 < len(statuses) <= SCHEDULING_STATUS_BATCH_MAX:
        raise Invalid(f"statuses: must map 1 to {SCHEDULING_STATUS_BATCH_MAX} container uuids to their status")
    problems = [f"statuses.{uuid}: must be a string of at most {SCHEDULING_STATUS_MAX_CHARS} characters"
                for uuid, text in statuses.items() if not _status_text(text)]
    if problems:
        raise Invalid(*problems)

    def work(tx: Repository) -> dict[str, Any]:
        updated: list[str] = []
        skipped: dict[str, str] = {}
        for uuid, text in statuses.items():
            patch = {"scheduling_status": text}
            try:
                container = visible_container(tx, principal, uuid, for_update=True)
                state = ContainerState(container["state"])
                _authorize_update(principal, container, state, state, patch)
                require_container_update(state, state, patch)
            except (NotFound, Forbidden, Invalid) as error:  # checked before anything is written
                skipped[uuid] = str(error)
                continue
            _apply(tx, ctx, container, state, patch)
            updated.append(uuid)
        return {"updated": updated, "skipped": skipped}

    return ctx.store.transact(work)


def _status_text(text: object) -> bool:
    return isinstance(text, str) and len(text) <= SCHEDULING_STATUS_MAX_CHARS
