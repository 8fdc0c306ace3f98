"""A whole cluster on loopback for execution tests: the API server, a real `crunchctl dispatch`
process with the local backend, and the crunch-runs it starts (real processes, real bubblewrap)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from cwl_crunch.settings import Settings
from cwl_crunch.store import Store
from tests.support.engines import bwrap_unavailable, require
from tests.support.flows import ok
from tests.support.service import RealClock, RunningService, request_body, start_service

FINAL = ("Complete", "Cancelled")


def require_bwrap() -> None:
    """Skip without a working bubblewrap; under CI=true, fail."""
    require(bwrap_unavailable())


@dataclass
class Cluster:
    service: RunningService
    root: Path
    dispatcher_options: list[str] = field(default_factory=list)
    dispatcher_env: dict[str, str] = field(default_factory=dict)  # e.g. SLURM_CONF for the Slurm backend
    shared_blobs: bool = True
    dispatcher: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> httpx.Client:
        return self.service.admin()

    def start_dispatcher(self, *extra: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "cwl_crunch.cli.main", "dispatch", "--api", self.service.url,
                   "--state-dir", str(self.root / "dispatch"), "--work-root", str(self.root / "work"),
                   "--hide", str(self.root / "data"), "--interval", "0.1", *self.dispatcher_options, *extra]
        if self.shared_blobs:
            command += ["--blob-root", str(self.service.settings.blob_root)]
        log = (self.root / "dispatcher.log").open("ab")
        env = {**os.environ, **self.dispatcher_env, "CRUNCH_DISPATCH_TOKEN": self.service.admin_token}
        self.dispatcher = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        return self.dispatcher

    def stop_dispatcher(self, signum: int = signal.SIGTERM) -> None:
        if self.dispatcher is not None and self.dispatcher.poll() is None:
            os.killpg(self.dispatcher.pid, signum) if signum == signal.SIGKILL else self.dispatcher.send_signal(signum)
            self.dispatcher.wait(10)
        self.dispatcher = None

    def submit(self, client: httpx.Client | None = None, **overrides: Any) -> dict[str, Any]:
        return ok((client or self.admin).post("/container_requests", json=request_body(**overrides)))

    def container(self, uuid: str) -> dict[str, Any]:
        return ok(self.admin.get(f"/containers/{uuid}"))

    def wait_for(self, uuid: str, done: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            container = self.container(uuid)
            if done(container):
                return container
            if time.monotonic() > deadline:
                raise AssertionError(f"{uuid} still {container['state']} after {timeout} s:\n{self.diagnostics(uuid)}")
            time.sleep(0.05)

    def wait_final(self, uuid: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_for(uuid, lambda c: c["state"] in FINAL, timeout)

    def log_files(self, container: dict[str, Any]) -> dict[str, bytes]:
        """The files of a container's log collection."""
        manifest = ok(self.admin.get(f"/collections/{container['log']}"))["manifest"]
        return {name: self.blob(entry["blob"]) for name, entry in manifest.items()}

    def blob(self, sha256: str) -> bytes:
        response = self.admin.get(f"/blobs/{sha256}")
        assert response.status_code == 200, response.text
        return response.content

    def crunch_run_pids(self) -> dict[str, int]:
        """Live crunch-run processes by container uuid, from the dispatcher's pid files."""
        pids = {}
        for pid_file in (self.root / "dispatch").glob("*.pid"):
            pids[pid_file.stem] = int(pid_file.read_text().split()[0])
        return pids

    def diagnostics(self, uuid: str) -> str:
        parts = []
        for path in [self.root / "dispatcher.log", self.root / "dispatch" / f"{uuid}.log"]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        self.stop_dispatcher()
        for pid in self.crunch_run_pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


@contextmanager
def cluster_over(store: Store, root: Path, *, real_clock: bool = False, heartbeat_timeout: float = 60,
                 janitor_interval: float = 0.2, blobs_read_only: bool = False) -> Iterator[Cluster]:
    """A service over `store` with its blobs in ROOT/data/blobs, ready for a dispatcher the test
    starts; stopped with everything it ran afterwards. `real_clock`: the server keeps real time
    and runs its janitor (heartbeats and dispatchers can time out)."""
    require_bwrap()
    settings = Settings(database_url=store.url, janitor_interval=janitor_interval, blobs_read_only=blobs_read_only,
                        container_heartbeat_timeout=timedelta(seconds=heartbeat_timeout))
    service = start_service(store, settings, blob_root=root / "data" / "blobs", run_janitor=real_clock,
                            clock=RealClock() if real_clock else None)
    cluster = Cluster(service, root)
    try:
        yield cluster
    finally:
        cluster.close()
        service.stop()


@contextmanager
def sqlite_cluster(root: Path, sqlite_template: Path, **options: Any) -> Iterator[Cluster]:
    """`cluster_over` a copy of the migrated SQLite template in ROOT/data."""
    path = root / "data" / "crunch.sqlite3"
    path.parent.mkdir(parents=True)
    shutil.copy(sqlite_template, path)
    store = Store(f"sqlite:///{path}")
    try:
        with cluster_over(store, root, **options) as cluster:
            yield cluster
    finally:
        store.dispose()
