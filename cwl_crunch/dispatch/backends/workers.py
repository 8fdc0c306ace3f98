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

The workers are not forked by the dispatcher itself but by a forker: a process the pool forks
once, when it is created, before the dispatcher starts the thread that follows the event stream.
A process forked while another of its threads runs gets a copy of whatever lock that thread held
at that moment, held for ever; the forker has one thread, so its workers start clean. The pool
asks it for a worker over a socket pair; it forks one and passes back its pid, start time and
the dispatcher's end of the worker's socket (SCM_RIGHTS). The workers are the forker's children
and it lets the kernel collect them (SIGCHLD ignored), so the dispatcher learns that one has
ended from its socket reaching its end. The forker exits when the pool closes its end (or the
dispatcher dies).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...processes import process_start

log = logging.getLogger(__name__)

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
        self.gone = False  # it has exited (seen as the end of its socket)
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
            self.gone = True  # the end of its socket: only its exit closes the worker's side
        except (BlockingIOError, InterruptedError):
            pass  # nothing more for now
        except OSError:
            self.gone = True
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
    exit code); `log_path(uuid)` is where its standard output and error go meanwhile. Create it
    before the process starts other threads: that is when it forks its forker."""

    def __init__(self, run: Callable[[str], int], log_path: Callable[[str], Path]) -> None:
        self.run = run
        self.log_path = log_path
        self.workers: list[Worker] = []
        if threading.active_count() > 1:
            log.warning("crunch-run's forker is forked while %d other threads run", threading.active_count() - 1)
        self._forker, self.forker_pid = self._start_forker()

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
        worker died while running it. Retires workers done or idle long enough, and forgets
        every worker that has exited."""
        now = time.monotonic() if now is None else now
        finished: list[tuple[str, int | None]] = []
        for worker in list(self.workers):
            finished += worker.reports()
            if worker.gone:
                if worker.container is not None:
                    finished.append((worker.container, None))
                self._drop(worker)
            elif worker.container is None and (worker.served >= MAX_CONTAINERS
                                               or now - worker.idle_since >= IDLE_SECONDS):
                self._drop(worker)
        return finished

    def close(self) -> None:
        """Retire every worker (each exits once its container, if any, is done), and the forker."""
        for worker in list(self.workers):
            self._drop(worker)
        self._forker.close()
        _collect_child(self.forker_pid, timeout=5.0)  # it exits at the end of its socket

    def _fork(self) -> Worker:
        """A new worker, from the forker (started again if it has gone)."""
        try:
            return self._ask_forker()
        except OSError as error:
            log.warning("the crunch-run forker has gone (%s): starting another", error)
            self._forker.close()
            _collect_child(self.forker_pid, timeout=5.0)
            self._forker, self.forker_pid = self._start_forker()
            return self._ask_forker()

    def _ask_forker(self) -> Worker:
        self._forker.sendall(b"\n")
        message, fds, _flags, _address = socket.recv_fds(self._forker, 64, 1)
        if not fds:
            raise ConnectionError("the forker answered without a socket" if message else "the forker closed its socket")
        connection = socket.socket(fileno=fds[0])
        pid, _, started = message.decode().partition(" ")
        worker = Worker(int(pid), started, connection)
        self.workers.append(worker)
        return worker

    def _start_forker(self) -> tuple[socket.socket, int]:
        """The pool's end of the forker's socket, and its pid."""
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the forker: fork workers on request until the pool goes, never return
            code = 1
            try:
                ours.close()
                code = _fork_on_request(theirs, self.run, self.log_path)
            except BaseException as error:  # noqa: BLE001 - the forker must exit, whatever happened
                print(f"crunch-run forker: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        theirs.close()
        return ours, pid

    def _drop(self, worker: Worker) -> None:
        """Forget a worker; closing its socket tells it to exit (after its container, if any)."""
        self.workers.remove(worker)
        worker.connection.close()


def _fork_on_request(control: socket.socket, run: Callable[[str], int], log_path: Callable[[str], Path]) -> int:
    """The forker: for each line from the pool, a worker, and its socket back to the pool."""
    os.setsid()  # a session of its own: a signal for the dispatcher's group does not reach it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its workers are collected as they exit
    _let_go_of_inherited(keep=control.fileno())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # One byte per request, and the next only once answered. Read with recv, not a file
    # object: a socket with a file open on it is not closed by close(), and a worker must not
    # keep the pool's connection to the forker open (the pool would wait on a dead forker).
    while control.recv(1):  # until the end: the pool closed it, or is gone
        pool_side, worker_side = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # crunch-run waits for its own children
                control.close()
                pool_side.close()
                code = _serve(worker_side, run, log_path)
            except BaseException as error:  # noqa: BLE001 - the worker must exit, whatever happened
                print(f"crunch-run worker: {error!r}", file=sys.stderr)
            finally:
                os._exit(code)
        worker_side.close()
        try:
            socket.send_fds(control, [f"{pid} {process_start(pid)}".encode()], [pool_side.fileno()])
        except OSError:
            return 0  # the pool is gone; so will the worker be, at the end of its socket
        finally:
            pool_side.close()
    return 0


def _serve(connection: socket.socket, run: Callable[[str], int], log_path: Callable[[str], Path]) -> int:
    os.setsid()  # a session of its own, so that a signal for the forker's group does not take it along
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
    stream) at /dev/null, so the forker and its workers do not hold them open. The numbers stay
    taken: the dispatcher's objects copied into this process may still close them, harmlessly."""
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


def _collect_child(pid: int, timeout: float) -> None:
    """Wait up to `timeout` seconds for a child that is ending to exit, and collect it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() >= deadline:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)
