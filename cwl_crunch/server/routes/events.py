"""/arvados/v1/events: Server-Sent Events, and the same events as a JSON batch for pollers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import StreamingResponse

from ...domain.errors import Invalid
from ...domain.principal import Principal
from ...services import events
from ...services.context import Context
from ...store.query import parse_json_param
from ..deps import ContextDep, PrincipalDep
from ..routing import ServiceRouter, run_service

router = ServiceRouter(prefix="/arvados/v1/events", tags=["events"])
KEEPALIVE_SECONDS = 15.0
AUTH_RECHECK_SECONDS = 0.5  # a revoked or finished container's token ends its stream within this (plus a poll)


def _since(ctx: Context, since: int | None, last_event_id: str | None) -> int:
    """Where to resume: the SSE Last-Event-ID header, else `since`, else "from now on".

    The header wins: a reconnecting EventSource keeps the URL (and its original `since`) and sends
    the id of the last event it received.
    """
    if last_event_id:
        try:
            since = int(last_event_id)
        except ValueError:
            raise Invalid("Last-Event-ID: must be an event id") from None
    if since is None:
        return events.last_event_id(ctx)
    if since < 0 or since > 2**63 - 1:
        raise Invalid("since: must be a non-negative event id")
    return since


@router.get("", response_class=StreamingResponse)
async def stream(
    request: Request,
    ctx: ContextDep,
    principal: PrincipalDep,
    since: int | None = None,
    filters: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Events the caller may see, oldest first, then live as they happen."""
    parsed = parse_json_param("filters", filters, [])
    start = await run_service(ctx, _since, ctx, since, last_event_id)
    await run_service(ctx, events.events_after, ctx, principal, start, parsed)  # validates filters
    return StreamingResponse(
        _events(request, ctx, principal, start, parsed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, ctx: Context, principal: Principal, since: int, filters: Any) -> AsyncIterator[str]:
    hub: events.EventHub = request.app.state.hub
    waiter = hub.subscribe()
    poll = request.app.state.event_poll_seconds
    idle = 0.0
    checked = time.monotonic()  # the token was valid when the stream opened
    reader = events.CommitReader(principal, filters)
    looked = time.monotonic()  # when the database was last asked for events
    try:
        yield f": stream open after {since}\n\n"  # where a client without an event yet resumes
        recorded: list[dict[str, Any]] | None = None  # what woke us; None: not known, so look
        while True:
            read = None if recorded is None else reader.read(since, recorded)
            if read is not None:
                batch, read_up_to = read  # from the commits themselves: no query
            elif recorded is not None and not events.may_pass(filters, recorded):
                batch, read_up_to = [], since  # nothing this stream wants was committed: no query
            else:
                batch, read_up_to = await run_service(ctx, events.read_events, ctx, principal, since, filters)
                reader.saw(batch)
                looked = time.monotonic()
            for event in batch:
                since = event["id"]
                yield f"id: {since}\nevent: {event['event_type']}\ndata: {json.dumps(event)}\n\n"
            since = max(since, read_up_to)
            wait, elapsed = poll, time.monotonic() - checked
            if elapsed >= AUTH_RECHECK_SECONDS:  # not on every wake: a busy stream wakes on every commit
                checked = time.monotonic()
                if not await run_service(ctx, events.still_authorized, ctx, principal):
                    return  # the token was revoked or expired (e.g. its container finished)
            else:
                wait = min(poll, AUTH_RECHECK_SECONDS - elapsed)  # the check skipped now happens then
            if len(batch) == events.BATCH:
                recorded = None
                continue
            wait = max(0.0, min(wait, looked + poll - time.monotonic()))  # no later than the next poll
            try:
                await asyncio.wait_for(waiter.woken.wait(), timeout=wait)
                recorded = waiter.take()
                idle = 0.0
            except TimeoutError:  # nothing committed here; a poll if one is due (other processes' commits)
                recorded = None if time.monotonic() - looked >= poll else []
                idle += wait
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keep-alive\n\n"
    finally:
        hub.discard(waiter)


@router.get("/batch")
def batch(ctx: ContextDep, principal: PrincipalDep, since: int = 0, filters: str | None = None) -> dict[str, Any]:
    """Up to 500 events after `since` as JSON: the fallback for clients that cannot stream."""
    if since < 0 or since > 2**63 - 1:
        raise Invalid("since: must be a non-negative event id")
    items = events.events_after(ctx, principal, since, parse_json_param("filters", filters, []))
    return {"items": items, "last_id": items[-1]["id"] if items else since}
