"""The event log behind the SSE stream (SPEC §11), and a hub that wakes waiting streams."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..domain.principal import Principal
from ..store.query import build_filters, visible_objects
from ..store.schema import events
from .context import Context
from .records import format_time

BATCH = 500


def events_after(ctx: Context, principal: Principal, since: int, filters: object) -> list[dict[str, Any]]:
    """Events newer than `since` that the principal may see, oldest first."""
    where = [*build_filters(events, filters or []), *visible_objects(principal, events.c.object_uuid)]
    with ctx.store.read() as tx:
        rows = tx.events_after(since, where, BATCH)
    return [{**row, "created_at": format_time(row["created_at"])} for row in rows]


def still_authorized(ctx: Context, principal: Principal) -> bool:
    """Whether a stream opened with this principal's token may go on (a container token ends with its container)."""
    with ctx.store.read() as tx:
        return tx.token_is_valid(principal.token_uuid, ctx.now())


def last_event_id(ctx: Context) -> int:
    with ctx.store.read() as tx:
        return tx.last_event_id()


class EventHub:
    """Wakes every waiting stream after a commit in this process (others are caught by polling)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has closed; the waiter is gone
                self.discard((loop, event))

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._waiters.discard(waiter)
