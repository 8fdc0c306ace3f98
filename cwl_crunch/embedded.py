"""The embedded local service (SPEC §1): one API server and dispatcher per data directory, shared
by every `cwl-crunch` run given no `--api`.

Imported on every `cwl-crunch` start, so standard library only; the daemon itself is
`crunchctl local-service start`, spawned detached. Its files in the data directory:

  service.lock  held by whoever checks for the daemon or starts it: one starter at a time
  daemon.lock   held by the daemon for its whole life (so at most one per directory); names its pid
  service.json  {"pid", "api_url", "started_at", "dispatcher": {"pid", "start"}}: written once the
                API answers, removed when the daemon stops
  user-token    the local user's token (0600): what the runner uses
  service.log   the daemon's and its dispatcher's output
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import process_start

SERVICE_LOCK = "service.lock"
DAEMON_LOCK = "daemon.lock"
RECORD = "service.json"
USER_TOKEN = "user-token"
LOG = "service.log"

START_SECONDS = 60.0  # how long a caller waits for the service to answer, starting it or waiting for another starter
PROBE_SECONDS = 1.0  # the fast path's wait for /config, which touches no database
BUSY_SECONDS = 10.0  # how long a live daemon that does not answer yet is waited for before it is replaced
STOP_SECONDS = 40.0  # a stopping daemon first lets running containers record their cancellation
LOG_KEEP_BYTES = 1 << 20  # service.log is moved to service.log.1 beyond this, at a start

_spawned: list[subprocess.Popen[bytes]] = []  # kept so the interpreter does not warn about a live child
_starting: dict[Path, _Starter] = {}  # start_in_background's threads, by resolved data directory


class ServiceError(Exception):
    """The embedded service could not be started or found."""


@dataclass(frozen=True)
class Service:
    api_url: str
    token: str
    data_dir: Path
    blob_root: Path


def default_data_dir() -> Path:
    """$CWL_CRUNCH_DATA_DIR, else $XDG_DATA_HOME/cwl-crunch, else ~/.local/share/cwl-crunch."""
    explicit = os.environ.get("CWL_CRUNCH_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG base directory spec says a relative value is to be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "cwl-crunch"


def ensure_running(data_dir: Path, timeout: float = START_SECONDS) -> Service:
    """A live service for `data_dir`, started (detached) if none answers. A start this process
    began in the background (`start_in_background`) is waited for, and its service taken."""
    data_dir = Path(data_dir).expanduser().resolve()
    starting = _starting.pop(data_dir, None)
    if starting is not None:
        starting.join(timeout)
        if not starting.is_alive() and starting.service is not None:
            return starting.service
    return _ensure(data_dir, timeout)


def _ensure(data_dir: Path, timeout: float) -> Service:
    service = running(data_dir)
    if service is not None:
        return service
    deadline = time.monotonic() + timeout
    make_private_dir(data_dir)
    with _locked(data_dir / SERVICE_LOCK, deadline) as locked:
        # Another process may have started it while this one waited for the lock.
        service = running(data_dir)
        if service is None and locked:
            service = _start(data_dir, deadline)
    if service is None:
        raise ServiceError(f"another process has been starting the local service in {data_dir} for"
                           f" {timeout:g} s:\n{log_tail(data_dir)}")
    return service


def start_in_background(data_dir: Path) -> None:
    """Begin `ensure_running(data_dir)` in a daemon thread. A later `ensure_running` of the same
    directory in this process waits for it and returns the service it found or started; if it
    failed, the later call tries once more itself and reports why it fails."""
    data_dir = Path(data_dir).expanduser().resolve()
    if data_dir not in _starting:
        _starting[data_dir] = _Starter(data_dir)
        _starting[data_dir].start()


class _Starter(threading.Thread):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="start-service", daemon=True)
        self.data_dir = data_dir
        self.service: Service | None = None

    def run(self) -> None:
        with contextlib.suppress(Exception):  # ensure_running meets it again, and reports it
            self.service = _ensure(self.data_dir, START_SECONDS)


def running(data_dir: Path, probe_timeout: float = PROBE_SECONDS) -> Service | None:
    """The service if its recorded daemon is alive and answers, else None (a file read and one GET)."""
    record = read_record(data_dir)
    if record is None or not _exists(record.get("pid")):
        return None
    url = record.get("api_url")
    if not isinstance(url, str) or not answers(url, probe_timeout):
        return None
    try:
        token = (data_dir / USER_TOKEN).read_text().strip()
    except OSError:
        return None
    return Service(url, token, data_dir, data_dir / "blobs")


def stop(data_dir: Path, timeout: float = STOP_SECONDS) -> bool:
    """Stop the daemon of `data_dir` (SIGTERM, SIGKILL after `timeout`); False if none was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    pid = daemon_pid(data_dir)
    if pid is not None:
        terminate(pid, timeout)
    clear_stale(data_dir)  # what a daemon that had to be killed leaves: its record, its dispatcher
    return pid is not None


def _start(data_dir: Path, deadline: float) -> Service:
    """Start the daemon (called holding service.lock, after the fast path failed)."""
    holder = daemon_pid(data_dir)
    if holder is not None:
        # Started by hand and still starting, stopping (idle), or stuck: give it a moment to
        # answer or go, then replace it.
        service = _wait(data_dir, min(deadline, time.monotonic() + BUSY_SECONDS), None)
        if service is not None:
            return service
        terminate(holder, 5.0)
    process = _spawn(data_dir)
    service = _wait(data_dir, deadline, process)
    if service is not None:
        return service
    if process.poll() is None:
        terminate(process.pid, 5.0)
        why = "did not answer in time"
    else:
        why = f"exited with status {process.returncode}"
    raise ServiceError(f"the local service in {data_dir} {why}; the end of {data_dir / LOG}:\n{log_tail(data_dir)}")


def _wait(data_dir: Path, deadline: float, process: subprocess.Popen[bytes] | None) -> Service | None:
    """Poll until the service answers; None at the deadline or once `process` is gone without a daemon."""
    while time.monotonic() < deadline:
        service = running(data_dir)
        if service is not None:
            return service
        # A daemon started by hand may have won the race with `process`, which then exits; a
        # daemon waited for (`process` None) may be stopping (idle) rather than starting.
        if (process is None or process.poll() is not None) and daemon_pid(data_dir) is None:
            return None
        time.sleep(0.02)
    return None


def _spawn(data_dir: Path) -> subprocess.Popen[bytes]:
    log_path = data_dir / LOG
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > LOG_KEEP_BYTES:
            log_path.replace(data_dir / (LOG + ".1"))
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cwl_crunch.cli.main", "local-service", "--data-dir", str(data_dir), "start"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=data_dir, start_new_session=True,
            env=daemon_environment(os.environ),
        )
    finally:
        os.close(log)
    _spawned.append(process)
    return process


def daemon_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment: that of the command starting it, less TMPDIR. The daemon (its
    dispatcher, crunch-runs and container engine) outlives that command, whose temporary directory
    is often its own and removed when it ends (test runners do that); they use the default."""
    return {key: value for key, value in environment.items() if key != "TMPDIR"}


# -- the files of the data directory ----------------------------------------------------------------


def make_private_dir(data_dir: Path) -> None:
    """Create the data directory 0700 (it holds tokens); tighten it if it exists."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)


def read_record(data_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((data_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def clear_stale(data_dir: Path) -> None:
    """With no daemon alive: stop the dispatcher its record names, if still there, and drop the record."""
    record = read_record(data_dir) or {}
    dispatcher = record.get("dispatcher")
    if isinstance(dispatcher, dict) and isinstance(dispatcher.get("pid"), int):
        if dispatcher.get("start") and process_start(dispatcher["pid"]) == dispatcher["start"]:
            terminate(dispatcher["pid"], 5.0)
    (data_dir / RECORD).unlink(missing_ok=True)


def log_tail(data_dir: Path, size: int = 3000) -> str:
    try:
        with (data_dir / LOG).open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode(errors="replace")
    except OSError as error:
        return f"(no log: {error})"


@contextlib.contextmanager
def _locked(path: Path, deadline: float) -> Iterator[bool]:
    """Hold an exclusive flock on `path`, waiting until `deadline`; yields whether it was taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        taken = False
        while not taken and time.monotonic() <= deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken = True
            except BlockingIOError:
                time.sleep(0.02)
        yield taken
    finally:
        os.close(fd)  # releases the lock


def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the live daemon of `data_dir` (the holder of daemon.lock), else None."""
    try:
        fd = os.open(data_dir / DAEMON_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it; closing the file lets go again
        except BlockingIOError:
            pass
        for _ in range(100):  # the holder writes its pid just after taking the lock
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            if text.isdigit():
                return int(text)
            time.sleep(0.01)
        raise ServiceError(f"{data_dir / DAEMON_LOCK} is locked but names no process")
    finally:
        os.close(fd)


# -- processes ----------------------------------------------------------------------------------------


def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds; returns once it is gone."""
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        if _gone_within(pid, wait):
            return


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child would otherwise stay a zombie
        if not process_start(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _exists(pid: Any) -> bool:
    """Cheap check that `pid` names a process (a zombie passes: the GET that follows catches it)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return True


def answers(api_url: str, timeout: float) -> bool:
    """Whether the API at `api_url` answers GET /config (http.client: urllib would follow proxy settings)."""
    parts = urllib.parse.urlsplit(api_url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/arvados/v1/config")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
