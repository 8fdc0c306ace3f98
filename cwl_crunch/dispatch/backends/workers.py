"""crunch-run workers: processes forked from the dispatcher that run one container after another.

Forking a fresh crunch-run for every container cost more CPU than the container itself on a
short step: the child's first writes to the memory it shares with the dispatcher (about 1,400
copy-on-write page faults), the copy and the teardown of its address space. A worker pays
that once and then runs containers one at a time, each exactly as `crunchctl run-container`
would; its pages are its own after the first.

Each worker talks to its dispatcher over a socket pair, one line at a time: the dispatcher
sends a container uuid to an idle worker; the worker answers `<uuid> <exit code>` when
crunch-run is done with it. A worker whose socket reaches its end (the dispatcher retired it,
or died) exits, after the container it is running, if any: a dispatcher that dies leaves its
containers to finish, and a restarted one adopts them (the local backend's pid files name the
worker). A worker is retired after `MAX_CONTAINERS` containers, so nothing one run leaves
behind can pile up, and after `IDLE_SECONDS` without work, so an idle dispatcher holds no
memory for them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

MAX_CONTAINERS = 100
IDLE_SECONDS = 60.0


class Worker:
    def __init__(self, pid: int, started: str, connection: socket.socket) -> None:
        self.pid = pid
        self.started = started  # start time in clock ticks since boot (tells a recycled pid apart)
        self.connection = connection
        self.container: str | None = None  # the one it runs now
        self.served = 0
        self.idle_since = time.monotonic()
        self._unread = b""

    def order(self, uuid: str) -> None:
        self.container = uuid
        self.served += 1
        self.connection.sendall(f"{uuid}\n".encode())

    def reports(self) -> list[tuple[str, int]]:
        """The containers it has finished since the last look, with crunch-run's exit codes."""
        try:
            while chunk := self.connection.recv(4096, socket.MSG_DONTWAIT):
                self._unread += chunk
        except (BlockingIOError, InterruptedError):
            pass  # nothing more for now
        except OSError:
            pass  # it is gone: its exit says the rest
        *lines, self._unread = self._unread.split(b"\n")
        done = []
        for line in lines:
            uuid, _, code = line.decode(errors="replace").partition(" ")
            done.append((uuid, int(code) if code.lstrip("-").isdigit() else 1))
            if uuid == self.container:
                self.container = None
                self.idle_since = time.monotonic()
        return done


class Pool:
    """The workers of one dispatcher. `run(uuid)` is what a worker does for a container (its
    exit code); `log_path(uuid)` is where its standard output and error go meanwhile."""

    def __init__(self, run: Callable[[str], int], log_path: Callable[[str], Path]) -> None:
        self.run = run
        self.log_path = log_path
        self.workers: list[Worker] = []
        self._retired: list[int] = []  # pids of workers told to stop, not yet collected

    def hand(self, uuid: str) -> Worker:
        """Give the container to an idle worker, forked if there is none."""
        worker = next((w for w in self.workers if w.container is None), None) or self._fork()
        try:
            worker.order(uuid)
        except OSError:
            self._drop(worker)
            raise
        return worker

    def collect(self, now: float | None = None) -> list[tuple[str, int | None]]:
        """The containers finished since the last call, with their exit codes; None for one whose
        worker died while running it. Retires workers done or idle long enough, and collects
        every worker that has exited (no zombie stays)."""
        now = time.monotonic() if now is None else now
        finished: list[tuple[str, int | None]] = []
        for worker in list(self.workers):
            finished += worker.reports()
            if _exited(worker.pid):
                finished += worker.reports()  # (what it said before it went)
                if worker.container is not None:
                    finished.append((worker.container, None))
                self._drop(worker, collected=True)
            elif worker.container is None and (worker.served >= MAX_CONTAINERS
                                               or now - worker.idle_since >= IDLE_SECONDS):
                self._drop(worker)
        self._retired = [pid for pid in self._retired if not _exited(pid)]
        return finished

    def close(self) -> None:
        """Retire every worker: each exits once its container, if any, is done."""
        for worker in list(self.workers):
            self._drop(worker)

    def _fork(self) -> Worker:
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: serve containers until told to stop, never return
            code = 1
            try:
                ours.close()
                code = _serve(theirs, self.run, self.log_path)
            except BaseException as error:  # noqa: BLE001 - the worker must exit, whatever happened
                print(f"crunch-run worker: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        theirs.close()
        worker = Worker(pid, _start_time(pid), ours)
        self.workers.append(worker)
        return worker

    def _drop(self, worker: Worker, collected: bool = False) -> None:
        """Forget a worker; closing its socket tells it to exit (after its container, if any)."""
        self.workers.remove(worker)
        worker.connection.close()
        if not collected:
            self._retired.append(worker.pid)


def _serve(connection: socket.socket, run: Callable[[str], int], log_path: Callable[[str], Path]) -> int:
    os.setsid()  # a session of its own: the dispatcher's end does not take it along
    _let_go_of_inherited(keep=connection.fileno())
    orders = connection.makefile("rb")
    for line in orders:  # the end: the dispatcher retired this worker, or is gone
        uuid = line.decode().strip()
        _redirect(log_path(uuid))
        code = 1
        try:
            code = run(uuid)
        except BaseException as error:  # noqa: BLE001 - reported, and the worker goes on
            print(f"crunch-run {uuid}: {error!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        # Between containers: a signal ends an idle worker, and nothing holds the log open.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _redirect(Path(os.devnull))
        try:
            connection.sendall(f"{uuid} {code}\n".encode())
        except OSError:
            return 0  # the dispatcher is gone: a restarted one sees this pid end
    return 0


def _let_go_of_inherited(keep: int) -> None:
    """Point every descriptor inherited from the dispatcher (its API connections, its event
    stream) at /dev/null, so a long-lived worker does not hold them open. The numbers stay taken:
    the dispatcher's objects copied into this process may still close them, harmlessly."""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in (keep, null):
            continue
        try:
            os.fstat(fd)
        except OSError:
            continue  # (the listing's own descriptor, closed since)
        os.dup2(null, fd)
    os.close(null)


def _redirect(log_path: Path) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def _exited(pid: int) -> bool:
    """Whether a child has ended (and is now collected)."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
