"""Rows written straight into the store, in bulk: many requests in a second, for list and status tests.

The API would take minutes to build 10,000 requests in interesting states one transition at a
time; these helpers write the end result directly, with every column the schema requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert

from cwl_crunch.store import Store
from cwl_crunch.store.schema import container_requests, containers, request_containers

CLUSTER = "zzzzz"


def uuid(infix: str, number: int) -> str:
    return f"{CLUSTER}-{infix}-{number:015d}"


def container_row(number: int, now: datetime, *, state: str = "Queued", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uuid": uuid("dz642", number),
        "state": state,
        "command": ["echo", str(number)],
        "cwd": "/var/spool/cwl",
        "environment": {},
        "output_path": "/var/spool/cwl",
        "output_glob": [],
        "container_image": "",
        "mounts": {"/var/spool/cwl": {"kind": "tmp"}},
        "secret_mounts": {},
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 28},
        "scheduling_parameters": {},
        "priority": 0 if state in ("Complete", "Cancelled") else 500,
        "runtime_status": {},
        "scheduling_status": "",
        "output_properties": {},
        "lock_count": 0,
        "cost": 0.0,
        "subrequests_cost": 0.0,
        "reuse_key": f"{number:064d}",
        "reuse_digests": {},
        "command_digest": f"{number:016d}",
        "created_at": now,
        "modified_at": now,
    }
    row.update(fields)
    return row


def request_row(number: int, owner_uuid: str, now: datetime, *, state: str = "Committed",
                container: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uuid": uuid("xvhdp", number),
        "owner_uuid": owner_uuid,
        "name": f"run {number:05d}",
        "description": "",
        "properties": {},
        "state": state,
        "requesting_container_uuid": None,
        "container_uuid": container["uuid"] if container else None,
        "container_count": 1 if container else 0,
        "container_count_max": 3,
        "priority": 0 if state == "Final" else 500,
        "held": False,
        "use_existing": True,
        "command": ["echo", str(number)],
        "cwd": "/var/spool/cwl",
        "output_path": "/var/spool/cwl",
        "mounts": {"/var/spool/cwl": {"kind": "tmp"}},
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 28},
        "output_properties": {},
        "cumulative_cost": 0.0,
        "created_at": now,
        "modified_at": now,
    }
    row.update(fields)
    return row


def user_uuid(store: Store, name: str) -> str:
    """The uuid of a user the service already knows (e.g. after `service.token(name)`)."""
    with store.read() as tx:
        user = tx.user_by_name(name)
    assert user is not None, f"no user {name!r}: create a token for it first"
    return user["uuid"]


def insert_rows(store: Store, requests: Sequence[dict[str, Any]], containers_: Sequence[dict[str, Any]]) -> None:
    """One transaction, one multi-row INSERT per table; each request is linked to its container."""
    links = [{"request_uuid": r["uuid"], "container_uuid": r["container_uuid"], "attempt": 1}
             for r in requests if r["container_uuid"]]
    with store.write() as tx:
        for table, rows in ((containers, containers_), (container_requests, requests), (request_containers, links)):
            if rows:
                tx.conn.execute(insert(table), _same_keys(rows))


def _same_keys(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A multi-row INSERT takes its columns from the first row: give every row every key (None if unset)."""
    keys = {key for row in rows for key in row}
    return [{**dict.fromkeys(keys), **row} for row in rows]


def seconds_apart(start: datetime, index: int) -> datetime:
    """Distinct, increasing creation times, so "newest first" has one right answer."""
    return start + timedelta(seconds=index)



def seed_runs(store: Store, owner_uuid: str, count: int, steps: int = 0) -> None:
    """`count` top-level requests named `run 00000` (oldest) upwards, one second apart: every tenth
    Running with an error (Failing), the rest Completed; plus `steps` Completed children of the newest."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    requests, containers_ = [], []
    for number in range(count):
        created = seconds_apart(start, number)
        failing = number % 10 == 0
        container = (container_row(number, created, state="Running", runtime_status={"error": f"error {number}"})
                     if failing else container_row(number, created, state="Complete", exit_code=0, finished_at=created))
        containers_.append(container)
        requests.append(request_row(number, owner_uuid, created, state="Committed" if failing else "Final",
                                    container=container))
    for number in range(count, count + steps):
        created = seconds_apart(start, number)
        container = container_row(number, created, state="Complete", exit_code=0, finished_at=created)
        containers_.append(container)
        requests.append(request_row(number, owner_uuid, created, state="Final", container=container,
                                    requesting_container_uuid=containers_[count - 1]["uuid"]))
    insert_rows(store, requests, containers_)
