"""What the pages' script reads with the session cookie: the event stream, log files, collection files.

The API's own endpoints for these take a bearer token, which the page does not have (the
cookie is HttpOnly). These routes authenticate the cookie and then run the very same endpoint
code, so visibility, byte ranges and `follow` behave exactly as through the API.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Header, Request, Response
from fastapi.responses import StreamingResponse

from ...domain.errors import NotFound
from ...files import FileBlobStore
from ...services import collections
from ..deps import ContextDep
from ..routes import events as events_route
from ..routes import logs as logs_route
from ..routing import ServiceRouter
from .pages import CookiePrincipal
from .rendering import DashboardRoute

router = ServiceRouter(route_class=DashboardRoute, include_in_schema=False)


@router.get("/dashboard/events")
async def events(request: Request, ctx: ContextDep, principal: CookiePrincipal,
                 last_event_id: Annotated[str | None, Header()] = None) -> Response:
    """The caller's events from now on (or after Last-Event-ID, when the browser reconnects)."""
    return await events_route.stream(request, ctx, principal, since=None, filters=None, last_event_id=last_event_id)


@router.get("/dashboard/requests/{uuid}/log/{path:path}")
async def log(uuid: str, request: Request, ctx: ContextDep, principal: CookiePrincipal, path: str = "",
              follow: bool = False, range_header: Annotated[str | None, Header(alias="Range")] = None) -> Response:
    """SPEC §8's log endpoint: a file (Range, `follow=1` while the container runs) or a directory."""
    return await logs_route.log(uuid, request, ctx, principal, path=path, follow=follow, range_header=range_header)


@router.get("/dashboard/files/{ident}/{path:path}")
def download(ident: str, path: str, ctx: ContextDep, principal: CookiePrincipal) -> Response:
    """A file of a visible collection, always as an attachment: a user's HTML must never run as the dashboard."""
    blob, size = collections.file_of(ctx, principal, ident, path)
    if ctx.settings.blob_root is None:
        raise NotFound("this server keeps no blobs: the file cannot be read here")
    chunks = FileBlobStore(ctx.settings.blob_root, read_only=True).open(blob, 0, size)
    name = path.rsplit("/", 1)[-1]
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Length": str(size),
        "Content-Security-Policy": "sandbox",
    }
    return StreamingResponse(chunks, headers=headers, media_type="application/octet-stream")
