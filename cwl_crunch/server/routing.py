"""Where endpoint code runs: on the event loop (SQLite) or in a worker thread (PostgreSQL).

Endpoints are plain functions calling the services, which do blocking database work. FastAPI
would run each in a worker thread, and that hop (plus one per sync dependency) cost about a
fifth of a request's CPU time. With SQLite the hop buys nothing: writers queue on one lock, and
a statement holds the GIL for nearly all of its run, so the endpoint runs inline on the event
loop. PostgreSQL round trips release the GIL and its transactions really overlap, so there the
endpoint still runs in a worker thread.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ..services.context import Context

T = TypeVar("T")


async def run_service(ctx: Context, work: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call blocking service code the way `ctx.store` prefers."""
    if ctx.store.concurrent_writers:
        return await run_in_threadpool(work, *args, **kwargs)
    return work(*args, **kwargs)


def _placed(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """An async endpoint running the sync one via `run_service` (endpoints without `ctx` do no I/O)."""

    @functools.wraps(endpoint)
    async def run(**kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        return await run_service(ctx, endpoint, **kwargs) if ctx is not None else endpoint(**kwargs)

    # Annotations resolved here, in the endpoint's module, whatever FastAPI does with wrappers.
    run.__signature__ = inspect.signature(endpoint, eval_str=True)  # type: ignore[attr-defined]
    return run


class ServiceRouter(APIRouter):
    """An APIRouter whose sync endpoints run where the database prefers (see the module doc)."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _placed(endpoint)
        super().add_api_route(path, endpoint, **kwargs)
