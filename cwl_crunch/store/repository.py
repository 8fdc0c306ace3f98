"""SQL for every use case, behind intention-named verbs. Never commits: services own transactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection

from ..domain.attributes import QUEUE_ENTRY
from ..domain.errors import Conflict
from ..domain.states import FINAL_CONTAINER_STATES
from ..domain.uuids import KIND_OF_TYPE, type_of
from . import dialect
from . import statements as sql
from .schema import (
    collections,
    container_requests,
    containers,
    dispatchers,
    events,
    live_logs,
    request_containers,
    tokens,
    users,
)

Row = dict[str, Any]
REQUEST_KIND = KIND_OF_TYPE["xvhdp"]
# Where flush_events puts a request event's visibility attributes, and which they are.
VISIBILITY = "visibility"
_REQUEST_VISIBILITY = ("owner_uuid", "requesting_container_uuid", "container_uuid")
# Computed by the database, never written.
_GENERATED = {"has_error"}


def _default(column: Any) -> Any:
    default = column.default
    return default.arg if default is not None and default.is_scalar else None


def _row(result_row: Any) -> Row | None:
    return None if result_row is None else dict(result_row._mapping)


class Repository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._events: list[dict[str, Any]] = []  # written by flush_events, just before commit
        # Containers and requests this transaction wrote, as they now stand. Writes lock their rows
        # (PostgreSQL) or the whole database (SQLite) until commit, so these cannot be stale.
        self._written: dict[str, Row] = {}
        self._by_pdh: dict[str, Row | None] = {}  # collection_by_pdh's answers (collections are only inserted)

    # -- generic -------------------------------------------------------------------------

    def _get(self, table: Table, uuid: str, for_update: bool = False) -> Row | None:
        if not for_update and uuid in self._written:
            return self._written[uuid]
        return _row(self.conn.execute(sql.by_uuid(table, for_update), {"uuid": uuid}).first())

    def _insert(self, table: Table, row: Mapping[str, Any]) -> Row:
        """Insert; returns the whole row as stored (column defaults filled in, no re-read)."""
        self.conn.execute(insert(table), row)
        stored = {c.name: _default(c) for c in table.c if c.name not in _GENERATED}
        stored.update(row)
        if table is containers or table is container_requests:
            self._written[stored["uuid"]] = stored
        return stored

    def _guarded_update(self, table: Table, old: Row, changes: Mapping[str, Any], now: datetime,
                        details: Mapping[str, Any] | None = None) -> Row:
        """Apply `changes` if the row is still in `old`'s state; record an event for what changed
        (with `details` among its properties)."""
        changed = {k: v for k, v in changes.items() if old.get(k) != v and k not in _GENERATED}
        if not changed:
            return old
        values = {**changed, "modified_at": now}
        stored = self.conn.execute(sql.guarded(table), {**values, "_uuid": old["uuid"], "_state": old["state"]}).first()
        if stored is None:
            raise Conflict(f"{old['uuid']} was changed by someone else; try again")
        new = dict(stored._mapping)
        self._written[new["uuid"]] = new
        self.add_event(old["uuid"], "update", {**_change_properties(old, new, changed), **(details or {})}, now)
        return new

    def list(
        self,
        table: Table,
        where: Sequence[ColumnElement[bool]],
        order: Sequence[Any],
        limit: int,
        offset: int,
        count: bool = True,
    ) -> tuple[list[Row], int | None]:
        query = select(table).where(*where).order_by(*order).limit(limit).offset(offset)
        items = [dict(r._mapping) for r in self.conn.execute(query)]
        available = None
        if count:
            available = self.conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
        return items, available

    def exists(self, table: Table, where: Sequence[ColumnElement[bool]]) -> bool:
        """Whether a row matches (no columns fetched or decoded)."""
        return self.conn.execute(select(literal(1)).select_from(table).where(*where).limit(1)).first() is not None

    def lock_key(self, key: str) -> None:
        dialect.lock_key(self.conn, key)

    # -- users and tokens ----------------------------------------------------------------

    def insert_user(self, row: Mapping[str, Any]) -> Row:
        return self._insert(users, row)

    def user_by_name(self, name: str) -> Row | None:
        return _row(self.conn.execute(select(users).where(users.c.name == name)).first())

    def insert_token(self, row: Mapping[str, Any]) -> Row:
        return self._insert(tokens, row)

    def token_with_user(self, secret_hash: str) -> Row | None:
        return _row(self.conn.execute(sql.TOKEN_WITH_USER, {"secret_hash": secret_hash}).first())

    def token_is_valid(self, token_uuid: str, now: datetime) -> bool:
        """The token still exists (container tokens are deleted when their container stops) and has not expired."""
        t = tokens.c
        query = select(t.uuid).where(t.uuid == token_uuid, t.expires_at.is_(None) | (t.expires_at > now))
        return self.conn.execute(query).first() is not None

    def delete_container_tokens(self, container_uuid: str) -> None:
        self.conn.execute(sql.DELETE_CONTAINER_TOKENS, {"container_uuid": container_uuid})

    # -- containers ----------------------------------------------------------------------

    def get_container(self, uuid: str, for_update: bool = False) -> Row | None:
        return self._get(containers, uuid, for_update)

    def insert_container(self, row: Mapping[str, Any], now: datetime) -> Row:
        row = self._insert(containers, row)
        row["has_error"] = "error" in (row["runtime_status"] or {})
        # What a dispatcher needs to queue it comes along: it need not list the queue for it.
        entry = {field: row[field] for field in QUEUE_ENTRY}
        self.add_event(row["uuid"], "create", {"old_state": None, "new_state": row["state"], "queue_entry": entry}, now)
        return row

    def update_container(self, old: Row, changes: Mapping[str, Any], now: datetime,
                         details: Mapping[str, Any] | None = None) -> Row:
        return self._guarded_update(containers, old, changes, now, details)

    def touch_heartbeat(self, uuid: str, now: datetime) -> None:
        """Record a heartbeat; deliberately no event (they come every few seconds)."""
        self._written.pop(uuid, None)
        self.conn.execute(update(containers).where(containers.c.uuid == uuid).values(heartbeat_at=now))

    def first_reuse_candidate(self, key: str, tiers: Sequence[str]) -> Row | None:
        """The candidate of the first tier in `tiers` that has one: every tier in one round trip."""
        return _row(self.conn.execute(sql.first_of_tiers(tuple(tiers)), {"reuse_key": key}).first())

    def containers_by_uuid(self, uuids: Sequence[str]) -> dict[str, Row]:
        if not uuids:
            return {}
        query = select(containers).where(containers.c.uuid.in_(set(uuids)))
        return {r.uuid: dict(r._mapping) for r in self.conn.execute(query)}

    def locked_containers_of(self, dispatcher_uuid: str) -> list[Row]:
        c = containers.c
        query = select(containers).where(c.dispatcher_uuid == dispatcher_uuid, c.state == "Locked")
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def running_without_heartbeat_since(self, before: datetime) -> list[Row]:
        c = containers.c
        stale = c.heartbeat_at.is_(None) & (c.started_at < before) | (c.heartbeat_at < before)
        query = select(containers).where(c.state == "Running", stale)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    # -- container requests --------------------------------------------------------------

    def get_request(self, uuid: str, for_update: bool = False) -> Row | None:
        return self._get(container_requests, uuid, for_update)

    def insert_request(self, row: Mapping[str, Any], now: datetime) -> Row:
        row = self._insert(container_requests, row)
        properties = {"old_state": None, "new_state": row["state"], "container_uuid": row["container_uuid"]}
        self.add_event(row["uuid"], "create", properties, now)
        return row

    def update_request(self, old: Row, changes: Mapping[str, Any], now: datetime) -> Row:
        return self._guarded_update(container_requests, old, changes, now)

    def delete_request(self, uuid: str, now: datetime) -> None:
        self._written.pop(uuid, None)
        self.conn.execute(delete(container_requests).where(container_requests.c.uuid == uuid))
        self.add_event(uuid, "delete", {}, now)

    def newest_requests(
        self, where: Sequence[ColumnElement[bool]], limit: int, offset: int
    ) -> list[tuple[Row, Row | None]]:
        """A page of requests, newest first, each with its current container.

        `where` may test container columns too (a derived status, see statuses.py): requests are
        then outer-joined to their current container.
        """
        r = container_requests.c
        query = (select(container_requests).select_from(_requests_for(where)).where(*where)
                 .order_by(r.created_at.desc(), r.uuid.desc()).limit(limit).offset(offset))
        requests = [dict(row._mapping) for row in self.conn.execute(query)]
        by_uuid = self.containers_by_uuid([row["container_uuid"] for row in requests if row["container_uuid"]])
        return [(row, by_uuid.get(row["container_uuid"])) for row in requests]

    def count_requests(self, where: Sequence[ColumnElement[bool]]) -> int:
        """How many requests `newest_requests` would page through."""
        return self.conn.execute(select(func.count()).select_from(_requests_for(where)).where(*where)).scalar_one()

    def committed_requests_for(self, container_uuid: str) -> list[Row]:
        """Committed requests whose current container is `container_uuid`."""
        rows = self.conn.execute(sql.COMMITTED_FOR, {"container_uuid": container_uuid})
        return [dict(row._mapping) for row in rows]

    def demand_for(self, container_uuid: str) -> Row:
        """What the Committed requests of a container ask for, summed up in the database.

        `wanted`: some request has priority > 0 (held ones included); `top_priority` and
        `top_created_at`: the top-level, unheld request that ranks first (highest priority,
        then oldest); `child_priority`: the highest priority among the Locked or Running
        containers whose unheld child requests want it. One query however many requests share
        the container (reading them all made each commit of popular work slower than the last).
        """
        return dict(self.conn.execute(sql.DEMAND, {"container_uuid": container_uuid}).one()._mapping)

    def committed_children_of(self, container_uuid: str) -> list[Row]:
        rows = self.conn.execute(sql.COMMITTED_CHILDREN, {"container_uuid": container_uuid})
        return [dict(row._mapping) for row in rows]

    def link_attempt(self, request_uuid: str, container_uuid: str, attempt: int) -> None:
        """Remember that the request used the container (the first attempt number is kept)."""
        row = {"request_uuid": request_uuid, "container_uuid": container_uuid, "attempt": attempt}
        self.conn.execute(sql.link_attempt(self.conn.dialect.name), row)

    def attempts_of(self, request_uuid: str) -> list[Row]:
        """Every container the request has used, oldest attempt first."""
        query = (
            select(containers)
            .join(request_containers, request_containers.c.container_uuid == containers.c.uuid)
            .where(request_containers.c.request_uuid == request_uuid)
            .order_by(request_containers.c.attempt)
        )
        return [dict(r._mapping) for r in self.conn.execute(query)]

    # -- collections ---------------------------------------------------------------------

    def insert_collection(self, row: Mapping[str, Any]) -> Row:
        inserted = self._insert(collections, row)
        if self._by_pdh.get(row["portable_data_hash"]) is None:  # not asked yet, or "none"
            self._by_pdh[row["portable_data_hash"]] = inserted
        return inserted

    def collection_by_pdh(self, pdh: str) -> Row | None:
        """The oldest untrashed collection with this content, or one this transaction inserted
        before asking (asked once per transaction; callers read the manifest, the same for both)."""
        if pdh not in self._by_pdh:
            query = (
                select(collections)
                .where(collections.c.portable_data_hash == pdh, collections.c.trash_at.is_(None))
                .order_by(collections.c.created_at)
                .limit(1)
            )
            self._by_pdh[pdh] = _row(self.conn.execute(query).first())
        return self._by_pdh[pdh]

    # -- dispatchers ---------------------------------------------------------------------

    def insert_dispatcher(self, row: Mapping[str, Any]) -> Row:
        return self._insert(dispatchers, row)

    def get_dispatcher(self, uuid: str) -> Row | None:
        return self._get(dispatchers, uuid)

    def update_dispatcher(self, uuid: str, changes: Mapping[str, Any]) -> None:
        self.conn.execute(update(dispatchers).where(dispatchers.c.uuid == uuid).values(**changes))

    def mark_dispatcher_dead(self, uuid: str, silent_since: datetime) -> bool:
        """Declare a dispatcher dead if it is still silent (a ping that just arrived wins)."""
        d = dispatchers.c
        result = self.conn.execute(
            update(dispatchers)
            .where(d.uuid == uuid, d.alive.is_(True), d.last_ping_at < silent_since)
            .values(alive=False)
        )
        return result.rowcount == 1

    def silent_dispatchers(self, before: datetime) -> list[Row]:
        d = dispatchers.c
        query = select(dispatchers).where(d.alive.is_(True), d.last_ping_at < before)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    # -- live logs -----------------------------------------------------------------------

    def append_live_logs(self, container_uuid: str, files: Mapping[str, str], now: datetime) -> None:
        rows = [{"container_uuid": container_uuid, "file": f, "data": d, "created_at": now} for f, d in files.items() if d]
        if rows:
            self.conn.execute(insert(live_logs), rows)

    def live_log_files(self, container_uuid: str) -> dict[str, tuple[str, datetime]]:
        """{file: (its text so far, when it last grew)}."""
        l = live_logs.c
        query = select(l.file, l.data, l.created_at).where(l.container_uuid == container_uuid).order_by(l.id)
        parts: dict[str, list[str]] = {}
        grown: dict[str, datetime] = {}
        for row in self.conn.execute(query):
            parts.setdefault(row.file, []).append(row.data)
            grown[row.file] = row.created_at
        return {name: ("".join(texts), grown[name]) for name, texts in parts.items()}

    def delete_live_logs(self, container_uuid: str) -> None:
        self.conn.execute(delete(live_logs).where(live_logs.c.container_uuid == container_uuid))

    # -- events --------------------------------------------------------------------------

    def add_event(self, object_uuid: str, event_type: str, properties: Mapping[str, Any], now: datetime) -> None:
        kind = KIND_OF_TYPE.get(type_of(object_uuid) or "", "")
        self._events.append(
            {
                "object_uuid": object_uuid,
                "object_kind": kind,
                "event_type": event_type,
                "properties": dict(properties),
                "created_at": now,
            }
        )

    def flush_events(self) -> list[dict[str, Any]]:
        """Write this transaction's events; the Store calls it as the last step before commit.

        Concurrent PostgreSQL writers would otherwise commit event ids out of order, and a stream
        reading `id > since` would skip the slower writer's events for good. Taking the lock only
        here, after every other lock the transaction takes, cannot deadlock.

        Returns them with their ids, and a request's events with the request's attributes that
        decide who may see it under `VISIBILITY` (not a column: for event streams in this process).
        """
        written = self._events
        if written:
            dialect.lock_key(self.conn, "events")
            ids = self.conn.execute(insert(events).returning(events.c.id, sort_by_parameter_order=True), written)
            for event, (event_id,) in zip(written, ids, strict=True):
                event["id"] = event_id
                request = self._written.get(event["object_uuid"]) if event["event_type"] != "delete" else None
                if request is not None and event["object_kind"] == REQUEST_KIND:
                    event[VISIBILITY] = {key: request[key] for key in _REQUEST_VISIBILITY}
            self._events = []
        return written

    def events_after(self, since: int, where: Sequence[ColumnElement[bool]], limit: int) -> list[Row]:
        query = select(events).where(events.c.id > since, *where).order_by(events.c.id).limit(limit)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def last_event_id(self) -> int:
        return self.conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()

    def delete_events_before(self, before: datetime) -> int:
        return self.conn.execute(delete(events).where(events.c.created_at < before)).rowcount


def _requests_for(where: Sequence[ColumnElement[bool]]) -> Any:
    """Requests, outer-joined to their current container when `where` tests its columns.

    PostgreSQL drops an unused outer join by itself; SQLite still probes the container of every
    row it counts, so the join is left out when nothing needs it.
    """
    if containers not in select(container_requests.c.uuid).where(*where).get_final_froms():
        return container_requests
    return container_requests.outerjoin(containers, containers.c.uuid == container_requests.c.container_uuid)


def _change_properties(old: Row, new: Row, changed: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "old_state": old["state"],
        "new_state": new["state"],
        "changed": sorted(changed),
    }
    if "container_uuid" in new:
        properties["container_uuid"] = new["container_uuid"]
    if "priority" in changed:
        properties["new_priority"] = new["priority"]
    if "exit_code" in new and new["state"] in FINAL_CONTAINER_STATES and old["state"] != new["state"]:
        # A container's result travels with its final event: whoever waits for it need not ask.
        properties["exit_code"], properties["output"] = new["exit_code"], new["output"]
    return properties
