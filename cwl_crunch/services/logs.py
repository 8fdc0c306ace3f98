"""Live logs: what crunch-run sends while a container runs, kept until its log collection is saved."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain.errors import Forbidden, Invalid
from ..domain.principal import Principal
from ..domain.states import ContainerState
from ..store.repository import Repository, Row
from .access import visible_container, visible_request
from .context import Context

FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_BATCH_CHARS = 4 << 20


def append(ctx: Context, principal: Principal, uuid: str, files: Mapping[str, Any]) -> dict[str, Any]:
    """Append text to live log files of a Locked or Running container (its locking token only)."""
    problems = [f"files: {name!r} is not a log file name" for name in files if not FILE_RE.match(name)]
    problems += [f"files: {name}: must be text" for name, text in files.items() if not isinstance(text, str)]
    if problems:
        raise Invalid(*problems)
    if sum(len(text) for text in files.values()) > MAX_BATCH_CHARS:
        raise Invalid(f"files: a batch may carry at most {MAX_BATCH_CHARS} characters")

    def work(tx: Repository) -> Row:
        container = visible_container(tx, principal, uuid)
        if not principal.is_admin or container["locked_by_uuid"] != principal.token_uuid:
            raise Forbidden(f"only the token that locked container {uuid} may write its log")
        if container["state"] not in (ContainerState.LOCKED.value, ContainerState.RUNNING.value):
            raise Invalid(f"log: container {uuid} is {container['state']}, not Locked or Running")
        tx.append_live_logs(uuid, files, ctx.now())
        return container

    ctx.store.transact(work)
    return {"uuid": uuid, "files": sorted(files)}


def live_files(tx: Repository, container_uuid: str) -> dict[str, tuple[bytes, Any]]:
    """{file name: (its bytes so far, when it last grew)}."""
    return {name: (text.encode(), at) for name, (text, at) in tx.live_log_files(container_uuid).items()}


# -- reading logs (SPEC §8) -----------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One log file of one attempt: live text from the database, or a blob of the log collection."""

    name: str
    size: int
    modified_at: datetime
    live: bytes | None = None
    blob: str | None = None


@dataclass(frozen=True)
class Attempt:
    container_uuid: str
    state: str
    files: dict[str, LogEntry]

    @property
    def final(self) -> bool:
        return self.state in (ContainerState.COMPLETE.value, ContainerState.CANCELLED.value)


def attempts(ctx: Context, principal: Principal, request_uuid: str) -> list[Attempt]:
    """Every container the request used, oldest first, with the log files each has so far."""
    with ctx.store.read() as tx:
        request = visible_request(tx, principal, request_uuid)
        containers = tx.attempts_of(request["uuid"]) if request["state"] != "Uncommitted" else []
        return [Attempt(c["uuid"], c["state"], files_of(tx, c)) for c in containers]


def files_of(tx: Repository, container: Row) -> dict[str, LogEntry]:
    """The log files a container has so far: its log collection's once saved, else the live ones."""
    collection = tx.collection_by_pdh(container["log"]) if container["log"] else None
    if collection is not None:
        at = collection["created_at"]
        return {
            path: LogEntry(path, entry["size"], at, blob=entry["blob"])
            for path, entry in collection["manifest"].items()
            if not path.endswith("/")
        }
    return {name: LogEntry(name, len(data), at, live=data) for name, (data, at) in live_files(tx, container["uuid"]).items()}
