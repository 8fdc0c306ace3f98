"""The event log behind the SSE stream (SPEC §11), and a hub that wakes waiting streams."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..domain.principal import Principal
from ..domain.uuids import KIND_OF_TYPE
from ..store.query import build_filters, visible_objects
from ..store.repository import REQUEST_KIND, VISIBILITY
from ..store.schema import events
from .context import Context
from .records import format_time

BATCH = 500
CONTAINER_KIND = KIND_OF_TYPE["dz642"]


def events_after(ctx: Context, principal: Principal, since: int, filters: object) -> list[dict[str, Any]]:
    """Events newer than `since` that the principal may see, oldest first."""
    return read_events(ctx, principal, since, filters)[0]


def read_events(ctx: Context, principal: Principal, since: int, filters: object) -> tuple[list[dict[str, Any]], int]:
    """`events_after`, and the id up to which it looked: events after that are yet to be committed.

    The newest id is read first, so every event up to it has committed by the time the events are
    read (ids are handed out in commit order, `Repository.flush_events`; a rolled-back write leaves
    a gap that no event fills later).
    """
    where = [*build_filters(events, filters or []), *visible_objects(principal, events.c.object_uuid)]
    with ctx.store.read() as tx:
        newest = tx.last_event_id()
        rows = tx.events_after(since, [*where, events.c.id <= newest], BATCH)
    return [_public(row) for row in rows], rows[-1]["id"] if len(rows) == BATCH else max(since, newest)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**{column: row[column] for column in _COLUMNS}, "created_at": format_time(row["created_at"])}


_COLUMNS = tuple(events.c.keys())


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
    checks = _prechecks(filters) or []
    if not checks:
        return bool(recorded)
    return any(_passes(checks, event) for event in recorded)


def _prechecks(filters: object) -> list[tuple[str, str, Any]] | None:
    """The filters that can be tested on an event in memory (None: `filters` is not a list)."""
    if not isinstance(filters, list):
        return None
    return [(f[0], f[1], f[2]) for f in filters if isinstance(f, list) and len(f) == 3
            and f[0] in _PRECHECKED and f[1] in ("=", "in")]


def _strings(operand: object) -> bool:
    return isinstance(operand, str) or isinstance(operand, list) and all(isinstance(v, str) for v in operand)


def _passes(checks: list[tuple[str, str, Any]], event: dict[str, Any]) -> bool:
    return all(event.get(attribute) == operand if operator == "=" else
               isinstance(operand, list) and event.get(attribute) in operand
               for attribute, operator, operand in checks)


class CommitReader:
    """One stream's events read straight from the commits that woke it, where that is certain to
    give what `events_after` would: saves a query per wake-up (a busy stream wakes on every commit).

    Certain means: every filter is `=`/`in` on an attribute in `_PRECHECKED`; the commits hold
    every id after the stream's position (nothing another process wrote is in between); and it
    can tell from the events alone whether the principal may see each object. It can for a
    request (its event carries the attributes `visible_requests` tests), for the principal's own
    container, and for a container the database showed it or that a request it may see has had
    (`request_containers` never loses a row while its request exists). A deleted request forgets
    what was learnt that way.
    """

    def __init__(self, principal: Principal, filters: object) -> None:
        self.principal = principal
        checks = _prechecks(filters)
        every_one = checks is not None and len(checks) == len(filters)  # type: ignore[arg-type]
        # Only strings compare in Python exactly as in SQL; the database coerces anything else.
        self.checks = checks if every_one and all(_strings(operand) for _, _, operand in checks) else None
        self.containers: set[str] = set()  # reached through a request the principal sees

    def read(self, since: int, recorded: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int] | None:
        """(the events after `since` to send, the id read up to), or None to ask the database."""
        if self.checks is None:
            return None  # this stream always asks the database
        self._learn(recorded)
        fresh = sorted((event for event in recorded if event["id"] > since), key=lambda event: event["id"])
        if not fresh or [e["id"] for e in fresh] != list(range(since + 1, since + 1 + len(fresh))):
            return None
        passed = []
        for event in fresh:
            if not _passes(self.checks, event):
                continue  # filtered out, whoever may see it
            visible = self._visible(event)
            if visible is None:
                return None
            if visible:
                passed.append(_public(event))
        return passed, fresh[-1]["id"]

    def saw(self, sent: list[dict[str, Any]]) -> None:
        """Note the containers behind events the database showed this principal (after a query)."""
        for event in sent:
            if event["object_kind"] == CONTAINER_KIND:
                self.containers.add(event["object_uuid"])
            elif event["object_kind"] == REQUEST_KIND and event["properties"].get("container_uuid"):
                self.containers.add(event["properties"]["container_uuid"])

    def _learn(self, recorded: list[dict[str, Any]]) -> None:
        for event in recorded:
            if event["object_kind"] != REQUEST_KIND:
                continue
            if event["event_type"] == "delete":
                self.containers.clear()
            elif self._sees_request(event.get(VISIBILITY)) and event[VISIBILITY]["container_uuid"]:
                self.containers.add(event[VISIBILITY]["container_uuid"])

    def _visible(self, event: dict[str, Any]) -> bool | None:
        """Whether the principal may see the event's object; None if the event cannot tell."""
        principal, uuid = self.principal, event["object_uuid"]
        if principal.is_admin or uuid == principal.container_uuid:
            return True
        if event["object_kind"] == CONTAINER_KIND:
            return True if uuid in self.containers else None
        if event["object_kind"] == REQUEST_KIND and VISIBILITY in event:
            return self._sees_request(event[VISIBILITY])
        return None

    def _sees_request(self, request: dict[str, Any] | None) -> bool:
        """`visible_requests`, in Python, for a request's attributes as its event carries them."""
        principal = self.principal
        if request is None:
            return False
        if principal.is_admin:
            return True
        if request["owner_uuid"] != principal.user_uuid:
            return False
        return principal.container_uuid is None or principal.container_uuid in (
            request["requesting_container_uuid"], request["container_uuid"])
