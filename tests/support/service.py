"""A real container service for tests: uvicorn on a loopback socket, in a thread, fresh database."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from cwl_crunch.cli.serving import loopback_socket
from cwl_crunch.server import create_app
from cwl_crunch.services.auth import create_user_token
from cwl_crunch.services.context import Context
from cwl_crunch.services.janitor import Janitor
from cwl_crunch.settings import Settings
from cwl_crunch.store import Store


class FakeClock:
    """A clock tests move by hand; starts at the real current time."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class RealClock(FakeClock):
    """The real time, plus whatever the test advanced it by (for tests of real processes)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float) -> datetime:
        self.offset += timedelta(seconds=seconds)
        return self()


@dataclass
class RunningService:
    store: Store
    settings: Settings
    clock: FakeClock
    url: str
    admin_token: str
    janitor: Janitor
    _server: uvicorn.Server
    _thread: threading.Thread
    _clients: list[httpx.Client] = field(default_factory=list)

    def token(self, user: str = "alice", admin: bool = False) -> str:
        return create_user_token(self.store, self.settings.cluster_id, user, admin, self.clock())

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url + "/arvados/v1", headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_service(
    store: Store,
    settings: Settings | None = None,
    *,
    run_janitor: bool = False,
    event_poll_seconds: float = 0.2,
    blob_root: Path | None = None,
    clock: FakeClock | None = None,
) -> RunningService:
    """`blob_root`: serve blobs from there (and check manifests against them); default none."""
    settings = settings or Settings(database_url=store.url)
    if blob_root is not None:
        settings = replace(settings, blob_root=blob_root)
    clock = clock or FakeClock()
    ctx = Context(store, settings, clock)
    app = create_app(ctx, run_janitor=run_janitor, event_poll_seconds=event_poll_seconds)
    sock = loopback_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test service did not start")
        time.sleep(0.005)
    admin = create_user_token(store, settings.cluster_id, "admin", True, clock())
    return RunningService(store, settings, clock, f"http://127.0.0.1:{port}", admin, app.state.janitor, server, thread)


# -- request bodies ------------------------------------------------------------------------


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid committed container request; override any field."""
    body: dict[str, Any] = {
        "name": "test",
        "state": "Committed",
        "priority": 500,
        "command": ["echo", "hello world"],
        "cwd": "/var/spool/cwl",
        "output_path": "/var/spool/cwl",
        "mounts": {"/var/spool/cwl": {"kind": "tmp", "capacity": 1 << 20}},
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 28},
    }
    body.update(overrides)
    return body
