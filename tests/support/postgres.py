"""A throwaway PostgreSQL server for tests: initdb into a temp dir, start, drop everything at exit."""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

_BINARIES = ("initdb", "pg_ctl", "postgres")
_SERVICE_USER = "postgres"


def _version(directory: Path) -> tuple[int, ...]:
    """`/usr/lib/postgresql/15/bin` → (15,), for newest-first ordering."""
    return tuple(int(part) for part in re.findall(r"\d+", directory.parent.name))


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: PATH first, then the newest Debian install."""
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _BINARIES):
            return directory
    return None


def _as_root() -> bool:
    """True when the server must be run as the `postgres` OS user (PostgreSQL refuses root)."""
    return os.geteuid() == 0


def available() -> str | None:
    """None when a throwaway server can be started here, else a one-line reason why not."""
    if find_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin"
    if _as_root():
        try:
            pwd.getpwnam(_SERVICE_USER)
        except KeyError:
            return f"running as root but there is no {_SERVICE_USER!r} OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root but `runuser` is not available"
    return None


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.port: int | None = None
        self.directory: Path | None = None

    def _run(self, binary: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the `postgres` user when we are root."""
        if self.bin_dir is None:
            raise RuntimeError(available())
        command = [str(self.bin_dir / binary), *args]
        if _as_root():
            command = ["runuser", "-u", _SERVICE_USER, "--", *command]
        # cwd "/": the postgres user may not be allowed into the caller's working directory.
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")

    def start(self) -> ThrowawayPostgres:
        """initdb a fresh cluster and start it; raises with the server log tail if it fails."""
        if self.directory is not None:
            return self
        self.directory = Path(tempfile.mkdtemp(prefix="crunch-pg-"))
        atexit.register(self.stop)
        if _as_root():
            shutil.chown(self.directory, user=_SERVICE_USER, group=pwd.getpwnam(_SERVICE_USER).pw_gid)
        data, log = self.directory / "data", self.directory / "server.log"
        init = self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if init.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.strip() or init.stdout.strip()}")
        self.port = _free_port()
        options = " ".join(
            [
                "-h 127.0.0.1",
                f"-p {self.port}",
                f"-k {shlex.quote(str(self.directory))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        started = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", options)
        if started.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            self.stop()
            raise RuntimeError(
                f"pg_ctl start failed ({started.returncode}): {started.stderr.strip()}\n"
                + "\n".join(["--- server log tail ---", *tail])
            )
        return self

    def stop(self) -> None:
        """Stop the server immediately and remove its directory; a no-op when already stopped."""
        directory, self.directory = self.directory, None
        if directory is None:
            return
        atexit.unregister(self.stop)
        if (directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(directory / "data"))
        shutil.rmtree(directory, ignore_errors=True)

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL of database `dbname` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self) -> psycopg.Connection:
        """An autocommit connection to the `postgres` maintenance database."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (optionally a copy of `template`) and return its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with self._admin() as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting anyone still using it."""
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
