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
    """Wakes every waiting stream after a commit in this process (others are caught by polling),
    telling it which events the commit recorded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[Waiter] = set()

    def publish(self, recorded: list[dict[str, Any]]) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            try:
                waiter.loop.call_soon_threadsafe(waiter.add, recorded)
            except RuntimeError:  # the loop has closed; the waiter is gone
                self.discard(waiter)

    def subscribe(self) -> Waiter:
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)


class Waiter:
    """One stream's wake-up: set by commits, with the events they recorded since it last looked."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.woken = asyncio.Event()
        self.recorded: list[dict[str, Any]] = []
        self.overflowed = False  # too many to keep: the stream must query

    def add(self, recorded: list[dict[str, Any]]) -> None:
        if len(self.recorded) + len(recorded) > BATCH:
            self.recorded, self.overflowed = [], True
        elif not self.overflowed:
            self.recorded.extend(recorded)
        self.woken.set()

    def take(self) -> list[dict[str, Any]] | None:
        """The events recorded since the last call (None: unknown, as after an overflow)."""
        recorded, overflowed = self.recorded, self.overflowed
        self.recorded, self.overflowed = [], False
        self.woken.clear()
        return None if overflowed else recorded


# Attributes an event has before it is written: filters on them can be checked against a commit's
# events, so a stream whose filters none of them pass skips its query.
_PRECHECKED = ("object_uuid", "object_kind", "event_type")


def may_pass(filters: object, recorded: list[dict[str, Any]]) -> bool:
    """False only if no event in `recorded` can pass `filters` (validated already): each filter
    on an attribute in `_PRECHECKED` with `=` or `in` is checked; any other filter is assumed to pass."""
    checks = [(f[0], f[1], f[2]) for f in filters or [] if isinstance(f, list) and len(f) == 3
              and f[0] in _PRECHECKED and f[1] in ("=", "in")] if isinstance(filters, list) else []
    if not checks:
        return bool(recorded)
    for event in recorded:
        if all(event.get(attribute) == operand if operator == "=" else
               isinstance(operand, list) and event.get(attribute) in operand
               for attribute, operator, operand in checks):
            return True
    return False
