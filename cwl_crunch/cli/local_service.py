"""`crunchctl local-service start`: the daemon of the embedded service (see cwl_crunch.embedded).

One per data directory (it holds daemon.lock): the API server on a loopback port the kernel
picks (the socket is bound here and handed to uvicorn, so nothing can take the port between
choosing and listening), SQLite and blobs in the data directory, and a `crunchctl dispatch`
child holding the admin token, started at the same time as the server (its requests wait in the
socket's backlog until the server accepts them). service.json is written once the API answers.

On SIGTERM/SIGINT the record goes first (no new runner picks a stopping service), then the
dispatcher, then the running crunch-runs, while the API still takes their cancellation (the next
daemon listens on another port: they could never report again), and the API server last.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import uvicorn

from .. import embedded
from ..store.database import Store
from ..store.schema import containers
from . import datadir
from .serving import build_server, loopback_socket

log = logging.getLogger(__name__)

DISPATCHER_GRACE = 10.0
CRUNCH_RUN_GRACE = 20.0  # crunch-run gives its process 10 s after SIGTERM, then saves logs and output
LISTEN_BACKLOG = 2048


VCPUS_PER_CORE = 4  # what the embedded dispatcher offers per host core, unless CRUNCH_LOCAL_VCPUS says


def local_vcpus() -> float:
    """The vCPUs the embedded dispatcher hands out. More than the host has: CWL steps ask for one
    core each by default, and most short steps spend their time starting and finishing, not
    computing, so one container per core would leave the machine idle. RAM is not oversubscribed."""
    text = os.environ.get("CRUNCH_LOCAL_VCPUS", "")
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = 0.0
    if value <= 0:
        if text:
            print(f"crunchctl local-service: ignoring CRUNCH_LOCAL_VCPUS={text!r} (not a positive number)",
                  file=sys.stderr)
        value = float(VCPUS_PER_CORE * (os.cpu_count() or 1))
    return value


IDLE_MINUTES = 30.0  # the daemon stops after this long without work or callers, unless CRUNCH_LOCAL_IDLE_MINUTES says


def idle_seconds() -> float | None:
    """How long the daemon stays without work or callers before it stops; None: it never does
    (CRUNCH_LOCAL_IDLE_MINUTES=0)."""
    text = os.environ.get("CRUNCH_LOCAL_IDLE_MINUTES", "")
    try:
        minutes = float(text) if text else IDLE_MINUTES
    except ValueError:
        print(f"crunchctl local-service: ignoring CRUNCH_LOCAL_IDLE_MINUTES={text!r} (not a number)", file=sys.stderr)
        minutes = IDLE_MINUTES
    return minutes * 60 if minutes > 0 else None


class Activity:
    """The API app, noting when it last had a request from anyone but the dispatcher (whose rounds
    and pings go on forever). A `cwl-crunch` probing the service counts: it is about to use it."""

    def __init__(self, app: Any, dispatcher_token: str) -> None:
        self.app = app
        self._dispatcher = f"Bearer {dispatcher_token}".encode()
        self.last = time.monotonic()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and dict(scope["headers"]).get(b"authorization") != self._dispatcher:
            self.last = time.monotonic()
        await self.app(scope, receive, send)


def _has_work(store: Store) -> bool:
    """Whether any container is queued, starting or running."""
    with store.read() as tx:
        return tx.exists(containers, [containers.c.state.in_(("Queued", "Locked", "Running"))])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon handles SIGTERM/SIGINT itself: the API must outlive the dispatcher and crunch-runs.
        yield


def serve(data_dir: Path) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; 1 if one already runs for `data_dir`."""
    data_dir = data_dir.expanduser().resolve()
    embedded.make_private_dir(data_dir)
    lock = _hold_daemon_lock(data_dir)  # held (the descriptor stays open) until this process exits
    if lock is None:
        print(f"crunchctl local-service: already running for {data_dir} (pid {embedded.daemon_pid(data_dir)})",
              file=sys.stderr)
        return 1
    print(f"crunchctl local-service: starting for {data_dir} (pid {os.getpid()})", file=sys.stderr, flush=True)
    embedded.clear_stale(data_dir)  # what a killed predecessor left
    built = build_server(data_dir)
    datadir.ensure_user_token(data_dir, built.store, built.settings.cluster_id, _user_name())
    sock = loopback_socket()
    admin_token = built.admin_token_path.read_text().strip()
    activity = Activity(built.app, admin_token)
    daemon = _Daemon(data_dir, f"http://127.0.0.1:{sock.getsockname()[1]}", admin_token,
                     partial(_has_work, built.store), activity, idle_seconds())
    config = uvicorn.Config(activity, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    # The loop uvicorn itself would pick (uvloop when installed): its transports and callbacks cost
    # the API server noticeably less CPU per request than asyncio's own loop.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        return runner.run(daemon.run(_Server(config), sock))


def _hold_daemon_lock(data_dir: Path) -> int | None:
    """Take daemon.lock for this process's life and write our pid in it; None if another daemon has it."""
    fd = os.open(data_dir / embedded.DAEMON_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically (readers never see half a record) with a file only its owner can read."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def _user_name() -> str:
    """The login name (what the dashboard shows), unless it would be the admin's."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER
        name = ""
    return name if name and name != "admin" else "local"


class _Daemon:
    def __init__(self, data_dir: Path, api_url: str, admin_token: str, has_work: Callable[[], bool],
                 activity: Activity, idle: float | None) -> None:
        self.data_dir = data_dir
        self.api_url = api_url
        self.admin_token = admin_token
        self.has_work = has_work
        self.activity = activity
        self.idle = idle
        self.started_at = datetime.now(timezone.utc).isoformat()
        self.dispatcher: subprocess.Popen[bytes] | None = None
        self.dispatcher_since = 0.0

    async def run(self, server: uvicorn.Server, sock: socket.socket) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        sock.listen(LISTEN_BACKLOG)  # the dispatcher's first requests wait there until uvicorn accepts
        # The dispatcher starts (Python, imports) while the server does: it needs only the URL and the token.
        await asyncio.to_thread(self._start_dispatcher)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            if await self._ready(server, serving, stop):
                self._write_record()
                self._announce()
                await self._watch(stop, serving)
        finally:
            await asyncio.to_thread(self._shutdown)
            server.should_exit = True
            await serving
            print(f"crunchctl local-service: stopped (pid {os.getpid()})", file=sys.stderr, flush=True)
        return 0 if stop.is_set() else 1

    async def _ready(self, server: uvicorn.Server, serving: asyncio.Task[None], stop: asyncio.Event) -> bool:
        while not server.started:
            if serving.done() or stop.is_set():
                return False
            await asyncio.sleep(0.01)
        return await asyncio.to_thread(embedded.answers, self.api_url, 10.0)

    def _start_dispatcher(self) -> None:
        data = self.data_dir
        command = [sys.executable, "-m", "cwl_crunch.cli.main", "dispatch", "--api", self.api_url,
                   "--blob-root", str(data / "blobs"), "--hide", str(data), "--vcpus", str(local_vcpus()),
                   "--state-dir", str(data / "dispatch"), "--work-root", str(data / "work")]
        environment = {**os.environ, "CRUNCH_DISPATCH_TOKEN": self.admin_token}
        # A session of its own: a Ctrl-C at the terminal reaches the daemon only, which stops things in order.
        self.dispatcher = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL, start_new_session=True)
        self.dispatcher_since = time.monotonic()

    def _write_record(self) -> None:
        """service.json: written once the API answers, and again for each new dispatcher."""
        assert self.dispatcher is not None
        pid = self.dispatcher.pid
        record = {"pid": os.getpid(), "api_url": self.api_url, "started_at": self.started_at,
                  "dispatcher": {"pid": pid, "start": embedded.process_start(pid)}}
        _write_private(self.data_dir / embedded.RECORD, json.dumps(record) + "\n")

    def _announce(self) -> None:
        token = (self.data_dir / embedded.USER_TOKEN).read_text().strip()
        print(f"crunchctl local-service: {self.api_url}/arvados/v1 for {self.data_dir}"
              f" (user token in {self.data_dir / embedded.USER_TOKEN})", file=sys.stderr, flush=True)
        print(f"dashboard: {self.api_url}/?token={token}", flush=True)

    async def _watch(self, stop: asyncio.Event, serving: asyncio.Task[None]) -> None:
        """Until told to stop, or idle for `self.idle` seconds: start the dispatcher again when it
        dies (later each time it dies young)."""
        delay = 1.0
        while not stop.is_set() and not serving.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(1.0, self.idle / 4) if self.idle else 1.0)
            if await asyncio.to_thread(self._idle):
                print(f"crunchctl local-service: no work and no callers for {self.idle / 60:g} min: stopping"
                      " (the next cwl-crunch starts it again)", file=sys.stderr, flush=True)
                stop.set()
                return
            assert self.dispatcher is not None
            status = self.dispatcher.poll()
            if status is None or stop.is_set():
                continue
            delay = 1.0 if time.monotonic() - self.dispatcher_since > 60 else min(2 * delay, 60.0)
            log.warning("the dispatcher exited with status %s; starting it again in %g s", status, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if not stop.is_set():
                await asyncio.to_thread(self._start_dispatcher)
                self._write_record()

    def _idle(self) -> bool:
        if self.idle is None or time.monotonic() - self.activity.last < self.idle:
            return False
        try:
            if not self.has_work():
                return True
        except Exception as error:  # noqa: BLE001 - an unreadable database is no reason to stop
            log.warning("cannot tell whether there is work: %s", error)
        self.activity.last = time.monotonic()  # look again in a whole idle period
        return False

    def _shutdown(self) -> None:
        (self.data_dir / embedded.RECORD).unlink(missing_ok=True)
        if self.dispatcher is not None and self.dispatcher.poll() is None:
            self.dispatcher.terminate()
            try:
                self.dispatcher.wait(DISPATCHER_GRACE)
            except subprocess.TimeoutExpired:
                self.dispatcher.kill()
                self.dispatcher.wait()
        _stop_crunch_runs(self.data_dir / "dispatch")


def _stop_crunch_runs(state_dir: Path) -> None:
    """SIGTERM the live crunch-runs the dispatcher's pid files name ("pid start"); SIGKILL stragglers."""
    runs: dict[int, str] = {}
    for pid_file in state_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid_text, start = pid_file.read_text().split()
            runs[int(pid_text)] = start
    runs = {pid: start for pid, start in runs.items() if embedded.process_start(pid) == start}
    if runs:
        log.info("cancelling %d running container(s)", len(runs))
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in runs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + CRUNCH_RUN_GRACE
        while runs and time.monotonic() < deadline:
            time.sleep(0.05)
            runs = {pid: start for pid, start in runs.items() if embedded.process_start(pid) == start}
