"""What the dashboard shows (SPEC §12): pages of requests by derived status, one request in full, actions.

Every query goes through the API's visibility rules (`visible_requests`, `visible_request`,
`collections.find`), so a person sees in the dashboard exactly what their token shows them
through the API. Filtering by derived status happens in the database (store/statuses.py) and
lists are paged there too, so a page never loads more rows than it shows. Deep pages still pay
for OFFSET and each list for its COUNT (with 10,000 requests: 9–75 ms a page on this machine).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain.errors import Invalid, NotFound
from ..domain.principal import Principal
from ..domain.progress import counters_text
from ..domain.status import derived_status, possible_actions
from ..store.query import visible_requests
from ..store.repository import Repository, Row
from ..store.schema import container_requests
from ..store.statuses import status_condition
from . import collections, logs, requests
from .access import visible_request
from .context import Context
from .records import container_view, request_view

PAGE_SIZE = 50
FILES_SHOWN = 100  # per collection; a link to the collection's own listing would be the next step
CONTENT_SHOWN = 4000  # characters of a json or text mount shown inline


@dataclass(frozen=True)
class Summary:
    """One request as a row of a list: what a person scans for."""

    uuid: str
    name: str
    status: str
    error: str | None
    warning: str | None
    counters: str | None
    cost: float
    created_at: datetime


@dataclass(frozen=True)
class Page:
    items: list[Summary]
    total: int
    number: int
    pages: int
    size: int = PAGE_SIZE


@dataclass(frozen=True)
class Listing:
    """The files of a visible collection (the first FILES_SHOWN of them) and how many more there are."""

    uuid: str
    name: str
    portable_data_hash: str
    files: list[tuple[str, int]]
    more: int


@dataclass(frozen=True)
class Input:
    target: str
    kind: str
    listing: Listing | None = None
    content: str | None = None
    unavailable: str | None = None


@dataclass(frozen=True)
class Attempt:
    uuid: str
    state: str
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    cost: float
    log_files: dict[str, int]


@dataclass(frozen=True)
class Detail:
    summary: Summary
    request: dict[str, Any]
    container: dict[str, Any] | None
    runtime_status: dict[str, Any]
    scheduling_status: str
    parent: Summary | None
    children: Page
    attempts: list[Attempt]
    inputs: list[Input]
    output: Listing | None
    actions: tuple[str, ...]


def summarize(request: Row, container: Row | None) -> Summary:
    """A request as a list shows it; its cost so far is its container's until it is Final and totalled."""
    status = (container or {}).get("runtime_status") or {}
    if request["state"] == "Final":
        cost = request["cumulative_cost"] or 0.0
    else:
        cost = ((container or {}).get("cost") or 0.0) + ((container or {}).get("subrequests_cost") or 0.0)
    return Summary(
        uuid=request["uuid"],
        name=request["name"] or "",
        status=derived_status(request, container),
        error=status.get("error") or None,
        warning=status.get("warning") or None,
        counters=counters_text(status),
        cost=cost,
        created_at=request["created_at"],
    )


def list_requests(ctx: Context, principal: Principal, *, status: str | None, page: int, top_level: bool) -> Page:
    """Requests newest first, PAGE_SIZE a page; `status` a derived status, `top_level` leaves out steps."""
    where = list(visible_requests(principal))
    if top_level:
        where.append(container_requests.c.requesting_container_uuid.is_(None))
    if status is not None:
        where.append(status_condition(status))
    _check_page_number(page)
    with ctx.store.read() as tx:
        return _page(tx, where, page)


def _check_page_number(page: int) -> None:
    if page < 1:
        raise Invalid("page: must be a whole number from 1")


def _page(tx: Repository, where: list[Any], number: int) -> Page:
    total = tx.count_requests(where)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if number > pages:
        raise NotFound(f"page {number} does not exist: there {'is 1 page' if pages == 1 else f'are {pages} pages'}")
    rows = tx.newest_requests(where, PAGE_SIZE, (number - 1) * PAGE_SIZE)
    return Page([summarize(r, c) for r, c in rows], total, number, pages)


def request_detail(ctx: Context, principal: Principal, uuid: str, *, children_page: int = 1) -> Detail:
    """One request with everything the detail page shows, read in one transaction."""
    _check_page_number(children_page)
    with ctx.store.read() as tx:
        request = visible_request(tx, principal, uuid)
        container = tx.get_container(request["container_uuid"]) if request["container_uuid"] else None
        view = container_view(container, principal) if container else None
        if view is not None:
            view.pop("auth", None)  # the container token: never on a page, even for an admin
        return Detail(
            summary=summarize(request, container),
            request=request_view(request, container),
            container=view,
            runtime_status=dict((container or {}).get("runtime_status") or {}),
            scheduling_status=_scheduling(ctx, request, container),
            parent=_parent(tx, principal, request),
            children=_children(tx, principal, container, children_page),
            attempts=_attempts(tx, request),
            inputs=_inputs(tx, principal, request.get("mounts") or {}),
            output=_listing(tx, principal, request["output_uuid"]) if request["output_uuid"] else None,
            actions=possible_actions(request, container),
        )


def _scheduling(ctx: Context, request: Row, container: Row | None) -> str:
    if container is None:
        return "No container is assigned." if request["state"] != "Uncommitted" else ""
    return requests.scheduling_text(ctx, request, container)


def _parent(tx: Repository, principal: Principal, request: Row) -> Summary | None:
    """The request whose container made this one (a workflow runner's, for a step)."""
    if not request["requesting_container_uuid"]:
        return None
    where = [container_requests.c.container_uuid == request["requesting_container_uuid"], *visible_requests(principal)]
    found = tx.newest_requests(where, 1, 0)
    return summarize(*found[0]) if found else None


def _children(tx: Repository, principal: Principal, container: Row | None, number: int) -> Page:
    if container is None:
        if number > 1:
            raise NotFound(f"page {number} does not exist: there is 1 page")
        return Page([], 0, 1, 1)
    where = [container_requests.c.requesting_container_uuid == container["uuid"], *visible_requests(principal)]
    return _page(tx, where, number)


def _attempts(tx: Repository, request: Row) -> list[Attempt]:
    containers = tx.attempts_of(request["uuid"]) if request["state"] != "Uncommitted" else []
    return [
        Attempt(
            uuid=c["uuid"],
            state=c["state"],
            exit_code=c["exit_code"],
            started_at=c["started_at"],
            finished_at=c["finished_at"],
            error=(c["runtime_status"] or {}).get("error") or None,
            cost=c["cost"] or 0.0,
            log_files={name: entry.size for name, entry in sorted(logs.files_of(tx, c).items())},
        )
        for c in containers
    ]


def _inputs(tx: Repository, principal: Principal, mounts: object) -> list[Input]:
    """Collection and file mounts as file listings, json and text mounts as their content."""
    if not isinstance(mounts, dict):
        return []  # an Uncommitted draft may hold anything until it is committed
    inputs = []
    for target, mount in sorted(mounts.items()):
        kind = mount.get("kind") if isinstance(mount, dict) else None
        if kind in ("json", "text"):
            content = mount.get("content")
            text = content if isinstance(content, str) else json.dumps(content, indent=2, sort_keys=True)
            inputs.append(Input(target, kind, content=text[:CONTENT_SHOWN]))
        elif kind in ("collection", "file"):
            ident = mount.get("portable_data_hash") or mount.get("uuid")
            if not isinstance(ident, str):
                continue  # a writable output collection: nothing to read yet
            path = mount.get("path") if isinstance(mount.get("path"), str) else ""
            listing = _listing(tx, principal, ident, path)
            unavailable = None if listing else f"collection {ident} is not visible to you"
            inputs.append(Input(target, kind, listing=listing, unavailable=unavailable))
    return inputs


def _listing(tx: Repository, principal: Principal, ident: str, path: str = "") -> Listing | None:
    row = collections.find(tx, principal, ident)
    if row is None:
        return None
    prefix = path.strip("/")
    files = sorted(
        (name, entry["size"]) for name, entry in row["manifest"].items()
        if not name.endswith("/") and (not prefix or name == prefix or name.startswith(prefix + "/"))
    )
    return Listing(row["uuid"], row["name"], row["portable_data_hash"], files[:FILES_SHOWN],
                   max(0, len(files) - FILES_SHOWN))


def act(ctx: Context, principal: Principal, uuid: str, action: str) -> str:
    """Cancel, hold, release or retry a request, through the same services as the API; the request to show next."""
    if action == "cancel":
        requests.update(ctx, principal, uuid, {"priority": 0})
    elif action == "hold":
        requests.hold(ctx, principal, uuid)
    elif action == "release":
        requests.release(ctx, principal, uuid)
    elif action == "retry":
        return str(requests.retry(ctx, principal, uuid)["uuid"])
    else:
        raise NotFound(f"no action {action!r}: cancel, hold, release or retry")
    return uuid
