"""Real OS processes for concurrency tests: API clients racing each other, and a second server.

The client functions run in children started with the multiprocessing "spawn" context, so they
import only httpx and the standard library and report back through a queue.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BARRIER_TIMEOUT = 60.0


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url + "/arvados/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def race_locks(url: str, token: str, name: str, uuids: list[str], barrier: Any, results: Any) -> None:
    """For each container: wait for every racer, then try to lock it; report (uuid, name, status, body)."""
    with _client(url, token) as client:
        for uuid in uuids:
            barrier.wait(BARRIER_TIMEOUT)
            response = client.post(f"/containers/{uuid}/lock")
            results.put((uuid, name, response.status_code, response.json()))


def race_commit(url: str, token: str, body: dict[str, Any], barrier: Any, results: Any) -> None:
    """Wait for every racer, then commit `body`; report (status, body)."""
    with _client(url, token) as client:
        client.get("/config")  # connect before the race, not during it
        barrier.wait(BARRIER_TIMEOUT)
        response = client.post("/container_requests", json=body)
        results.put((response.status_code, response.json()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`crunchctl server` in its own process over an existing database (a second API server)."""

    def __init__(self, database_url: str | None, data_dir: Path) -> None:
        """`database_url` None: the default, a SQLite file in `data_dir`."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.url + "/arvados/v1"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        command = [
            sys.executable, "-m", "cwl_crunch.cli.main", "server",
            "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{self.port}",
        ]
        if database_url is not None:
            command += ["--database", database_url]
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/arvados/v1/config", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the second server did not start:\n{self.log_path.read_text(errors='replace')[-2000:]}")

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self._log.closed:
            self._log.close()
