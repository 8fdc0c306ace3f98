"""/arvados/v1/blobs/{sha256}: PUT (streamed, verified), HEAD and GET with byte ranges (SPEC §9).

Any valid token may read and write blobs. Bodies stream in both directions through a worker
thread, about a megabyte at a time, so a blob of any size costs the server little memory and
its disk I/O never blocks the event loop.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
import anyio.to_thread
from fastapi import Depends, Header, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from ...files import BlobNotFound, BlobStore, FileBlobStore, ReadOnly
from ...files.blobs import CHUNK
from ..deps import ContextDep, PrincipalDep
from ..ranges import byte_range
from ..routing import ServiceRouter

log = logging.getLogger(__name__)

router = ServiceRouter(prefix="/arvados/v1", tags=["blobs"])

Sha256 = Annotated[str, PathParam(pattern="^[0-9a-f]{64}$", description="sha256 of the blob's bytes, lower-case hex")]
_OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


async def get_blobs(ctx: ContextDep) -> BlobStore:
    """The store under `settings.blob_root` (this router is mounted only when there is one)."""
    root = ctx.settings.blob_root
    assert root is not None
    return FileBlobStore(root, read_only=ctx.settings.blobs_read_only)


BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


@router.put(
    "/blobs/{sha256}",
    openapi_extra={"requestBody": {"required": True, "content": _OCTETS}},
    responses={422: {"description": "the bytes do not hash to sha256"}, 503: {"description": "read-only store"}},
)
async def put_blob(sha256: Sha256, request: Request, blobs: BlobsDep, _: PrincipalDep) -> dict[str, Any]:
    """Store the request body as a blob, if it hashes to `sha256` (already stored: not rewritten)."""
    try:
        size = await anyio.to_thread.run_sync(blobs.put, sha256, _body_chunks(request))
    except ReadOnly as error:
        raise HTTPException(503, f"cannot store blobs: {error}") from None
    except ClientDisconnect:
        raise HTTPException(400, "the client went away before sending the whole blob") from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("blob store full", extra={"action": "put_blob", "blob": sha256})
        raise HTTPException(507, f"the blob store is full: {error.strerror}") from None
    return {"hash": sha256, "size": size}


@router.head("/blobs/{sha256}", responses={404: {"description": "no such blob"}})
async def head_blob(sha256: Sha256, blobs: BlobsDep, _: PrincipalDep) -> Response:
    """200 with the blob's Content-Length if it is stored, else 404."""
    size = await anyio.to_thread.run_sync(blobs.size, sha256)
    if size is None:
        raise BlobNotFound(sha256)
    return Response(headers=_headers(sha256, size))


@router.get(
    "/blobs/{sha256}",
    response_class=StreamingResponse,
    responses={
        200: {"content": _OCTETS},
        206: {"description": "the requested byte range", "content": _OCTETS},
        404: {"description": "no such blob"},
        416: {"description": "the range starts beyond the blob"},
    },
)
async def get_blob(
    sha256: Sha256, blobs: BlobsDep, _: PrincipalDep, range_: Annotated[str | None, Header(alias="Range")] = None
) -> Response:
    """The blob's bytes; one `Range: bytes=N-`, `N-M` or `-N` gives 206 with that part."""
    size = await anyio.to_thread.run_sync(blobs.size, sha256)
    if size is None:
        raise BlobNotFound(sha256)
    wanted = byte_range(range_, size, "the blob")
    if wanted is None:
        start, end, status, headers = 0, size, 200, _headers(sha256, size)
    else:
        start, end = wanted
        headers = {**_headers(sha256, end - start), "Content-Range": f"bytes {start}-{end - 1}/{size}"}
        status = 206
    chunks = await anyio.to_thread.run_sync(blobs.open, sha256, start, end)
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type="application/octet-stream")


# -- helpers -------------------------------------------------------------------------------

def _headers(sha256: str, length: int) -> dict[str, str]:
    return {"Content-Length": str(length), "Accept-Ranges": "bytes", "ETag": f'"{sha256}"'}


def _body_chunks(request: Request) -> Iterator[bytes]:
    """The request body, received on the event loop, in batches for blocking code in a worker thread."""
    stream = request.stream()

    async def next_batch() -> bytes:
        batch: list[bytes] = []
        size = 0
        async for chunk in stream:
            batch.append(chunk)
            size += len(chunk)
            if size >= CHUNK:
                break
        return b"".join(batch)

    while batch := anyio.from_thread.run(next_batch):
        yield batch
