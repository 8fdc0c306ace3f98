"""Servers for the benchmarks: `crunchctl server` as a real process, and a throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.postgres import ThrowawayPostgres, available


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _crunchctl() -> list[str]:
    """The `crunchctl` next to this interpreter, else the module (same code either way)."""
    script = Path(sys.executable).with_name("crunchctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cwl_crunch.cli.main"]


class CrunchServer:
    """One `crunchctl server` process with its own data directory; SQLite unless `database` is given."""

    def __init__(self, data_dir: Path, database: str | None = None, options: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.database = database
        self.options = options
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CrunchServer:
        command = [*_crunchctl(), "server", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]
        if self.database:
            command += ["--database", self.database]
        command += self.options
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/arvados/v1/config", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"crunchctl server did not start; see {self.data_dir / 'server.log'}")

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data_dir / 'crunch.sqlite3').resolve()}"

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux), to report CPU per request."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def user_token(self, user: str) -> str:
        """A token for a (non-admin) user, made the way an operator would: `crunchctl token create`."""
        command = [*_crunchctl(), "token", "create", "--data-dir", str(self.data_dir), "--user", user]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Databases:
    """Where each dialect's benchmark databases come from: files, or a throwaway PostgreSQL server."""

    def __init__(self, workdir: Path, postgres_url: str | None) -> None:
        self.workdir = workdir
        self.postgres_url = postgres_url
        self._postgres: ThrowawayPostgres | None = None

    def postgres_reason(self) -> str | None:
        """None when PostgreSQL benchmarks can run, else why not."""
        return None if self.postgres_url else available()

    def new_postgres_database(self) -> str:
        if self.postgres_url:
            return self.postgres_url
        if self._postgres is None:
            self._postgres = ThrowawayPostgres().start()
        name = f"bench_{uuidlib.uuid4().hex[:10]}"
        return self._postgres.create_database(name)

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.stop()


@contextmanager
def server_for(databases: Databases, dialect: str, *options: str) -> Iterator[CrunchServer]:
    """A fresh server over a fresh database of `dialect`, with more `crunchctl server` options."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"crunch-bench-{dialect}-", dir=databases.workdir))
    database = databases.new_postgres_database() if dialect == "postgresql" else None
    server = CrunchServer(data_dir, database, options).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
