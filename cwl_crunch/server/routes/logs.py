"""/arvados/v1/container_requests/{uuid}/log/{container_uuid}/{file} (SPEC §8).

A small read-only WebDAV tree: the request's attempts are directories named by container uuid,
their log files the files within. A Running container's files are its live log; a final one's
are the files of its log collection (or the live log, kept, if that collection was never saved).
`Range` works on every file, so clients tail by polling; `?follow=1` streams appended bytes
until the container is final.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated
from xml.sax.saxutils import escape

from fastapi import Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ...domain.errors import NotFound
from ...domain.principal import Principal
from ...files.blobs import FileBlobStore
from ...services import logs
from ...services.context import Context
from ..deps import ContextDep, PrincipalDep
from ..ranges import byte_range, start_of
from ..routing import ServiceRouter, run_service

router = ServiceRouter(prefix="/arvados/v1/container_requests", tags=["logs"])

METHODS = ["GET", "HEAD", "OPTIONS", "PROPFIND"]
CONTAINER_UUID_RE = re.compile(r"^[a-z0-9]{5}-dz642-[a-z0-9]{15}\Z")
FOLLOW_POLL_SECONDS = 0.25


@router.api_route("/{uuid}/log", methods=METHODS, include_in_schema=False)
@router.api_route("/{uuid}/log/{path:path}", methods=["HEAD", "OPTIONS", "PROPFIND"], include_in_schema=False)
@router.get("/{uuid}/log/{path:path}")
async def log(
    uuid: str,
    request: Request,
    ctx: ContextDep,
    principal: PrincipalDep,
    path: str = "",
    follow: bool = False,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The request's logs: GET/HEAD a file (Range, `follow=1`), GET/PROPFIND a directory."""
    if request.method == "OPTIONS":
        return Response(headers={"Allow": ", ".join(METHODS), "DAV": "1"})
    container_uuid, name = _parse(path)
    attempts = await run_service(ctx, logs.attempts, ctx, principal, uuid)
    if container_uuid is None:
        children = {a.container_uuid: (0, _newest(a)) for a in attempts}
        return _directory(request, f"{uuid}/log/", children)
    attempt = next((a for a in attempts if a.container_uuid == container_uuid), None)
    if attempt is None:
        raise NotFound(f"container request {uuid} has no attempt {container_uuid}")
    if name is None:
        children = {f.name: (f.size, f.modified_at) for f in attempt.files.values()}
        return _directory(request, f"{uuid}/log/{container_uuid}/", children)
    if request.method == "PROPFIND":
        entry = _entry(attempt, name)
        return _propfind(f"{uuid}/log/{container_uuid}/", {name: (entry.size, entry.modified_at)}, directory=False)
    if follow and request.method == "GET":
        start = start_of(range_header)
        return StreamingResponse(_follow(ctx, principal, uuid, container_uuid, name, start),
                                 media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})
    return _file(ctx, _entry(attempt, name), request.method, range_header)


def _parse(path: str) -> tuple[str | None, str | None]:
    """(container uuid, file name); anything that is not exactly that shape is 404."""
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if not parts:
        return None, None
    if len(parts) > 2 or not CONTAINER_UUID_RE.match(parts[0]) or (len(parts) == 2 and not logs.FILE_RE.match(parts[1])):
        raise NotFound(f"no log file {path!r}")
    return parts[0], parts[1] if len(parts) == 2 else None


def _entry(attempt: logs.Attempt, name: str) -> logs.LogEntry:
    entry = attempt.files.get(name)
    if entry is None:
        raise NotFound(f"container {attempt.container_uuid} has no log file {name!r} (yet)")
    return entry


def _newest(attempt: logs.Attempt) -> datetime | None:
    return max((f.modified_at for f in attempt.files.values()), default=None)


def _directory(request: Request, href: str, children: dict[str, tuple[int, datetime | None]]) -> Response:
    if request.method == "PROPFIND":
        return _propfind(href, children, directory=True)
    items = [{"name": name, "size": size, "modified_at": at.isoformat() if at else None}
             for name, (size, at) in sorted(children.items())]
    if request.method == "HEAD":
        return Response(headers={"Content-Type": "application/json"})
    return JSONResponse({"items": items})


def _propfind(href: str, children: dict[str, tuple[int, datetime | None]], directory: bool) -> Response:
    """A WebDAV multistatus: the directory itself (if listing one), then each child."""
    base = "/arvados/v1/container_requests/" + href
    responses = [_dav_response(base, 0, None, True)] if directory else []
    for name, (size, at) in sorted(children.items()):
        is_dir = directory and href.endswith("/log/")
        responses.append(_dav_response(base + name + ("/" if is_dir else ""), size, at, is_dir))
    body = '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">' + "".join(responses) + "</D:multistatus>"
    return Response(body, status_code=207, media_type="application/xml; charset=utf-8")


def _dav_response(href: str, size: int, at: datetime | None, is_dir: bool) -> str:
    props = [f"<D:displayname>{escape(href.rstrip('/').rsplit('/', 1)[-1])}</D:displayname>"]
    props.append("<D:resourcetype><D:collection/></D:resourcetype>" if is_dir else "<D:resourcetype/>")
    if not is_dir:
        props.append(f"<D:getcontentlength>{size}</D:getcontentlength>")
    if at is not None:
        props.append(f"<D:getlastmodified>{format_datetime(at, usegmt=True)}</D:getlastmodified>")
    return (f"<D:response><D:href>{escape(href)}</D:href><D:propstat><D:prop>{''.join(props)}</D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")


def _file(ctx: Context, entry: logs.LogEntry, method: str, range_header: str | None) -> Response:
    headers = {"Accept-Ranges": "bytes", "Last-Modified": format_datetime(entry.modified_at, usegmt=True)}
    span = byte_range(range_header, entry.size)
    start, end = span or (0, entry.size)
    status = 206 if span else 200
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    media = "application/json" if entry.name.endswith(".json") else "text/plain; charset=utf-8"
    headers["Content-Length"] = str(end - start)
    if method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media)
    if entry.live is not None:
        return Response(entry.live[start:end], status_code=status, headers=headers, media_type=media)
    blobs = _blob_store(ctx)
    assert entry.blob is not None
    return StreamingResponse(blobs.open(entry.blob, start, end), status_code=status, headers=headers, media_type=media)


def _blob_store(ctx: Context) -> FileBlobStore:
    if ctx.settings.blob_root is None:
        raise NotFound("this server keeps no blobs: the log collection cannot be read here")
    return FileBlobStore(ctx.settings.blob_root, read_only=True)


async def _follow(ctx: Context, principal: Principal, uuid: str, container_uuid: str, name: str,
                  offset: int) -> AsyncIterator[bytes]:
    """Bytes of the file from `offset` on, as they are appended, until the container is final."""
    while True:
        attempts = await run_service(ctx, logs.attempts, ctx, principal, uuid)
        attempt = next((a for a in attempts if a.container_uuid == container_uuid), None)
        if attempt is None:
            return
        entry = attempt.files.get(name)
        if entry is not None and entry.size > offset:
            if entry.live is not None:
                chunk = entry.live[offset:]
            else:
                chunk = b"".join(_blob_store(ctx).open(entry.blob or "", offset, entry.size))
            offset += len(chunk)
            yield chunk
        if attempt.final:
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
