"""The dashboard's pages: the list of requests at `/` and one request in full.

Each page can also be asked for as a fragment (`?partial=1`): the part that changes, which the
page's script fetches again when the event stream says something changed (see static/dashboard.js).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from ...domain.principal import Principal
from ...domain.status import STATUSES
from ...services import dashboard
from ...services.context import Context
from ..deps import ContextDep
from ..routing import ServiceRouter, run_service
from . import params
from .login import log_in
from .rendering import DashboardRoute, templates
from .session import cookie_principal

router = ServiceRouter(route_class=DashboardRoute, include_in_schema=False)
CookiePrincipal = Annotated[Principal, Depends(cookie_principal)]
LIVE_STATES = ("Queued", "Locked", "Running")
TAIL_FILES = ("stdout.txt", "stderr.txt", "crunch-run.txt")


@dataclass(frozen=True)
class Tail:
    """The log file the detail page follows: the current container's, live while it may still run."""

    url: str
    file: str
    files: list[str]
    size: int
    live: bool


@router.get("/")
async def home(request: Request, ctx: ContextDep, token: str | None = None, status: str | None = None,
               page: str | None = None, scope: str | None = None, partial: str | None = None) -> Response:
    """Requests, newest first; `?token=` logs in first (the URL the embedded service prints)."""
    if token is not None:
        return await log_in(request, ctx, token)
    principal = await cookie_principal(request)
    number, chosen_scope, chosen_status = params.page_number(page), params.scope(scope), status or None
    result = await run_service(ctx, dashboard.list_requests, ctx, principal, status=chosen_status, page=number,
                               top_level=chosen_scope == "top")
    filters = {"status": chosen_status, "scope": None if chosen_scope == "top" else chosen_scope}
    values = {
        "page": result,
        "status": chosen_status,
        "scope": chosen_scope,
        "statuses": STATUSES,
        "now": ctx.now(),
        "logged_in": True,
        "links": _pager("/", result, "page", filters),
        "partial_url": params.url("/", **filters, page=number if number > 1 else None, partial=1),
    }
    return templates(request).page("_requests.html" if partial else "list.html", **values)


@router.get("/dashboard/requests/{uuid}")
async def request_page(request: Request, uuid: str, ctx: ContextDep, principal: CookiePrincipal,
                       children: str | None = None, log: str | None = None, partial: str | None = None) -> Response:
    """One request: errors first, then what it waits for, its steps, attempts, files and log."""
    children_page, log_name = params.page_number(children, "children"), params.log_file(log)
    detail = await run_service(ctx, dashboard.request_detail, ctx, principal, uuid, children_page=children_page)
    return render_detail(request, ctx, detail, log_name, partial=bool(partial))


def render_detail(request: Request, ctx: Context, detail: dashboard.Detail, log_name: str = params.DEFAULT_LOG_FILE,
                  *, partial: bool = False, refused: list[str] | None = None, status_code: int = 200) -> Response:
    """The detail page (or its live fragment); `refused`: why the API turned an action down."""
    path = f"/dashboard/requests/{detail.summary.uuid}"
    children = detail.children.number
    query = {"children": children if children > 1 else None,
             "log": None if log_name == params.DEFAULT_LOG_FILE else log_name}
    values = {
        "detail": detail,
        "now": ctx.now(),
        "logged_in": True,
        "refused": refused or [],
        "page_url": params.url(path, **query),
        "partial_url": params.url(path, **query, partial=1),
        "children_links": _pager(path, detail.children, "children", {"log": query["log"]}),
        "tail": _tail(detail, log_name),
    }
    name = "_detail.html" if partial else "detail.html"
    return templates(request).page(name, status_code, **values)


def _tail(detail: dashboard.Detail, log_name: str) -> Tail | None:
    container = detail.container
    if container is None:
        return None
    attempt = next((a for a in detail.attempts if a.uuid == container["uuid"]), None)
    files = dict(attempt.log_files) if attempt else {}
    names = sorted({*files, *TAIL_FILES} - {"container.json", "node.json"})
    url = f"/dashboard/requests/{detail.summary.uuid}/log/{container['uuid']}/{log_name}"
    return Tail(url, log_name, names, files.get(log_name, 0), container["state"] in LIVE_STATES)


def _pager(path: str, page: dashboard.Page, name: str, keep: dict[str, Any]) -> dict[str, str | None]:
    """Links to the first, newer, older and last pages (None where there is none)."""
    def link(number: int) -> str:
        return params.url(path, **keep, **{name: number if number > 1 else None})

    return {
        "first": link(1) if page.number > 1 else None,
        "newer": link(page.number - 1) if page.number > 1 else None,
        "older": link(page.number + 1) if page.number < page.pages else None,
        "last": link(page.pages) if page.number < page.pages else None,
    }
