"""Fill a database with many containers, fast, in the shapes real use leaves behind.

Rows are written straight through SQLAlchemy Core (executemany), with reuse keys, per-field
digests and command digests computed by the same domain functions the service uses, so the
service's reuse lookups find them exactly as they would find containers it created itself.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert

from cwl_crunch.domain.collections import portable_data_hash
from cwl_crunch.domain.priority import request_rank
from cwl_crunch.domain.reuse import field_digests, reuse_fields, reuse_key
from cwl_crunch.services.lifecycle import command_digest
from cwl_crunch.store import Store
from cwl_crunch.store.schema import collections, containers

from workload import definition

# What each reuse key's containers look like, and how often (percent). A key's "kind" says
# which reuse tier a lookup of it must answer from: `unreusable` keys have containers, none of
# them reusable (Cancelled, failed, or Running with an error).
KINDS = (("complete", 45), ("running", 10), ("locked", 5), ("queued", 20), ("unreusable", 20))
_BATCH = 5000
_OWNER = "zzzzz-tpzed-000000000000000"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class Seeded:
    """Reuse keys by kind, and the definition behind a few of them (to commit over HTTP)."""

    keys: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind, _ in KINDS})
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: int = 0
    collections: int = 0


def _uuid(infix: str, rng: random.Random) -> str:
    number, tail = rng.getrandbits(78), ""
    for _ in range(15):
        number, digit = divmod(number, 36)
        tail += _DIGITS[digit]
    return f"zzzzz-{infix}-{tail}"


def _collection(number: int, when: datetime, kind: str, rng: random.Random) -> dict[str, Any]:
    blob = hashlib.sha256(f"{kind} {number} {rng.random()}".encode()).hexdigest()
    manifest = {f"{kind}.txt": {"blob": blob, "size": 1000 + number % 5000}}
    return {
        "uuid": _uuid("4zz18", rng),
        "owner_uuid": _OWNER,
        "name": f"{kind} of container {number}",
        "portable_data_hash": portable_data_hash(manifest),
        "manifest": manifest,
        "properties": {},
        "created_at": when,
        "modified_at": when,
        "trash_at": None,
    }


def _identity(work: dict[str, Any]) -> dict[str, Any]:
    """The reuse columns of a container doing `work`, computed as the service computes them."""
    fields = reuse_fields(work)
    return {"reuse_key": reuse_key(fields), "reuse_digests": field_digests(fields), "command_digest": command_digest(fields)}


def _container(work: dict[str, Any], state: str, when: datetime, rng: random.Random) -> dict[str, Any]:
    started = when + timedelta(seconds=30) if state in ("Running", "Complete", "Cancelled") else None
    finished = started + timedelta(seconds=rng.randint(60, 7200)) if state in ("Complete", "Cancelled") else None
    return {
        **work,
        "uuid": _uuid("dz642", rng),
        "state": state,
        "secret_mounts": {},
        "scheduling_parameters": {},
        "priority": request_rank(rng.randint(1, 1000), when) if state in ("Queued", "Locked", "Running") else 0,
        "progress": rng.random() if state == "Running" else None,
        "runtime_status": {},
        "scheduling_status": "",
        "exit_code": None,
        "log": None,
        "output": None,
        "output_properties": {},
        "lock_count": 0 if state == "Queued" else 1,
        "locked_by_uuid": None,
        "dispatcher_uuid": None,
        "auth": None,
        "started_at": started,
        "finished_at": finished,
        "heartbeat_at": datetime.now(timezone.utc) if state == "Running" else started,
        "cost": 0.0,
        "subrequests_cost": 0.0,
        "created_at": when,
        "modified_at": finished or started or when,
    }


def _rows_for_key(index: int, kind: str, work: dict[str, Any], when: datetime, rng: random.Random
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """("container" | "collection", row) for every row one reuse key brings."""
    if rng.random() < 0.1 or kind == "unreusable":  # an earlier attempt that was cancelled
        cancelled = _container(work, "Cancelled", when - timedelta(hours=1), rng)
        cancelled["runtime_status"] = {"error": "container lost", "cause": "infrastructure"}
        yield "container", cancelled
        if kind == "unreusable" and rng.random() < 0.5:
            return
    if kind == "unreusable":
        state = rng.choice(("Complete", "Running"))
        row = _container(work, state, when, rng)
        if state == "Complete":
            row.update(exit_code=1)
        else:
            row["runtime_status"] = {"error": "step failed"}
        yield "container", row
        return
    row = _container(work, kind.capitalize(), when, rng)
    if kind == "complete":
        log, output = _collection(index, when, "log", rng), _collection(index, when, "output", rng)
        row.update(exit_code=0, log=log["portable_data_hash"], output=output["portable_data_hash"])
        yield "collection", log
        yield "collection", output
    yield "container", row


def seed(store: Store, total: int, rng_seed: int | None = None) -> Seeded:
    """Insert `total` containers (and the collections Complete ones need) for work nobody asked for yet."""
    rng = random.Random(rng_seed)
    run = f"seed-{rng.getrandbits(32):08x}"
    kinds = [kind for kind, percent in KINDS for _ in range(percent)]
    seeded = Seeded()
    start = datetime.now(timezone.utc) - timedelta(days=30)
    batches: dict[str, list[dict[str, Any]]] = {"container": [], "collection": []}
    index = 0
    while seeded.containers < total:
        kind = rng.choice(kinds)
        work = definition(run, index)
        identity = _identity(work)
        when = start + timedelta(seconds=index * 20)
        for table, row in _rows_for_key(index, kind, work, when, rng):
            batches[table].append(row)
            if table == "container":
                row.update(identity)
                seeded.containers += 1
            else:
                seeded.collections += 1
        key = identity["reuse_key"]
        seeded.keys[kind].append(key)
        if len(seeded.keys[kind]) <= 200:
            seeded.definitions[key] = work
        if len(batches["container"]) >= _BATCH:
            _flush(store, batches)
        index += 1
    _flush(store, batches)
    return seeded


def _flush(store: Store, batches: dict[str, list[dict[str, Any]]]) -> None:
    with store.write() as tx:
        if batches["collection"]:
            tx.conn.execute(insert(collections), batches["collection"])
        if batches["container"]:
            tx.conn.execute(insert(containers), batches["container"])
    batches["collection"].clear()
    batches["container"].clear()
