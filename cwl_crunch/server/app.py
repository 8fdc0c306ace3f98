"""The FastAPI application: routers, error mapping, the dashboard, the event hub and the janitor loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..services.context import Context
from ..services.events import EventHub
from ..services.janitor import Janitor
from . import errors
from .routes import blobs, container_requests, containers, events, logs, misc

log = logging.getLogger(__name__)


def create_app(ctx: Context, *, run_janitor: bool = True, event_poll_seconds: float = 1.0) -> FastAPI:
    """An app over `ctx`. The janitor runs every `ctx.settings.janitor_interval` s unless disabled."""
    hub = EventHub()
    ctx.store.on_events(hub.publish)
    janitor = Janitor(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_janitor_loop(janitor, ctx.settings.janitor_interval)) if run_janitor else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="cwl-crunch container service", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.hub = hub
    app.state.janitor = janitor
    app.state.event_poll_seconds = event_poll_seconds
    errors.install(app)
    for module in (container_requests, containers, events, logs, misc):
        app.include_router(module.router)
    if ctx.settings.blob_root is not None:  # no blob root, no blob store: no blob endpoints
        app.include_router(blobs.router)
    app.add_middleware(_DashboardOnFirstUse, target=app)
    return app


class _DashboardOnFirstUse:
    """Adds the dashboard's routes to `target` when the first request outside the API arrives.
    Importing the dashboard (its templates, its routes' dependencies) takes about 0.1 s, which
    every cold start of the embedded service would otherwise spend before it can answer; a CWL
    run that starts the service never opens the dashboard."""

    def __init__(self, app: ASGIApp, target: FastAPI) -> None:
        self.app, self.target, self.installed = app, target, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.installed and scope["type"] == "http" and not scope["path"].startswith("/arvados/"):
            from . import dashboard

            dashboard.install(self.target)
            self.installed = True
        await self.app(scope, receive, send)


async def _janitor_loop(janitor: Janitor, interval: float) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(janitor.tick)
        except Exception:  # noqa: BLE001 - the loop must survive one bad round
            log.exception("janitor round failed", extra={"action": "janitor"})
        await asyncio.sleep(interval)
