"""crunch-run workers (dispatch/backends/workers.py) and the local backend's use of them: real
forked processes, with a `run` that stands in for crunch-run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cwl_crunch.dispatch.backends import Capacity, local, workers
from cwl_crunch.runner.crunch_run import Options

UUID = "zzzzz-dz642-000000000000001"


def _uuid(n: int) -> str:
    return f"zzzzz-dz642-{n:015d}"


def _pool(tmp_path: Path, run) -> workers.Pool:  # type: ignore[no-untyped-def]
    return workers.Pool(run, lambda uuid: tmp_path / f"{uuid}.log")


def _collect(pool: workers.Pool, count: int, timeout: float = 10) -> list[tuple[str, int | None]]:
    """What the pool reports until `count` containers have finished."""
    finished: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + timeout
    while len(finished) < count and time.monotonic() < deadline:
        finished += pool.collect()
        time.sleep(0.01)
    return finished


def _gone(pid: int, timeout: float = 10) -> bool:
    """Whether the process `pid` ends within `timeout` and is collected (no zombie stays)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(pid) == "":
            return True
        time.sleep(0.01)
    return False


def _ended(pid: int, timeout: float = 10) -> bool:
    """Whether the process `pid` ends within `timeout` (a zombie counts)."""
    deadline = time.monotonic() + timeout
    while _state(pid) not in ("", "Z"):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _state(pid: int) -> str:
    """The process's state letter ("" once it has gone altogether)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _says(uuid: str) -> int:
    os.write(1, f"running {uuid} in {os.getpid()}\n".encode())
    return 0 if uuid.endswith("1") else 3


def test_one_worker_runs_container_after_container_and_reports_each_exit_code(tmp_path: Path) -> None:
    pool = _pool(tmp_path, _says)
    forked = []
    try:
        first = pool.hand(_uuid(1))
        forked.append(first.pid)
        assert _collect(pool, 1) == [(_uuid(1), 0)]
        second = pool.hand(_uuid(2))
        assert second is first and len(pool.workers) == 1, "the idle worker takes the next one"
        assert _collect(pool, 1) == [(_uuid(2), 3)]
        for n in (1, 2):  # each container's output went to its own log
            assert (tmp_path / f"{_uuid(n)}.log").read_text() == f"running {_uuid(n)} in {first.pid}\n"
        busy = pool.hand(_uuid(3)), pool.hand(_uuid(4))  # one busy: a second worker is forked
        forked.append(busy[1].pid)
        assert busy[0] is first and busy[1] is not first and len(pool.workers) == 2
        assert sorted(_collect(pool, 2)) == [(_uuid(3), 3), (_uuid(4), 3)]
    finally:
        pool.close()
    assert forked and all(_gone(pid) for pid in forked), "a retired worker exits"


def test_a_worker_dying_while_it_runs_a_container_is_reported_and_collected(tmp_path: Path) -> None:
    def dies(uuid: str) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    pool = _pool(tmp_path, dies)
    try:
        worker = pool.hand(UUID)
        assert _collect(pool, 1) == [(UUID, None)]
        assert pool.workers == []
        assert _gone(worker.pid), "collected: no zombie left behind"
        assert pool.hand(_uuid(2)).pid != worker.pid, "the next container gets a new worker"
    finally:
        pool.close()


def test_a_worker_is_retired_after_its_share_of_containers_and_after_idling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "MAX_CONTAINERS", 2)
    pool = _pool(tmp_path, _says)
    try:
        first = pool.hand(_uuid(1))
        _collect(pool, 1)
        assert pool.hand(_uuid(2)) is first
        _collect(pool, 1)
        assert pool.workers == [] and _gone(first.pid), "two served: retired, and it exits"
        second = pool.hand(_uuid(3))
        assert second is not first
        _collect(pool, 1)
        pool.collect(now=time.monotonic() + workers.IDLE_SECONDS)
        assert pool.workers == [] and _gone(second.pid), "idle long enough: retired too"
    finally:
        pool.close()


def test_a_worker_lets_go_of_what_it_inherited_from_the_dispatcher(tmp_path: Path) -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    inherited = listening.fileno()

    def looks(uuid: str) -> int:
        os.write(1, f"{os.readlink(f'/proc/self/fd/{inherited}')}\n".encode())
        return 0

    pool = _pool(tmp_path, looks)
    try:
        worker = pool.hand(UUID)
        assert _collect(pool, 1) == [(UUID, 0)]
        assert (tmp_path / f"{UUID}.log").read_text() == f"{os.devnull}\n"
        assert os.readlink(f"/proc/{worker.pid}/fd/1") == os.devnull, "between containers no log is held open"
    finally:
        listening.close()
        pool.close()


_HELD = threading.Lock()


def test_a_worker_starts_clean_while_another_thread_holds_a_lock(tmp_path: Path) -> None:
    """The forker is forked before the thread takes the lock: a worker forked from this process
    while the thread held it would have a copy held for ever."""
    def takes_the_lock(uuid: str) -> int:
        return 0 if _HELD.acquire(timeout=2) else 9

    pool = _pool(tmp_path, takes_the_lock)
    taken, release = threading.Event(), threading.Event()

    def holds() -> None:
        with _HELD:
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holds)
    thread.start()
    try:
        assert taken.wait(10)
        pool.hand(UUID)
        assert _collect(pool, 1) == [(UUID, 0)], "the worker's copy of the lock is free"
    finally:
        release.set()
        thread.join()
        pool.close()


def test_a_forker_that_has_gone_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = _pool(tmp_path, _says)
    try:
        first, before = pool.forker_pid, pool.hand(_uuid(1))
        assert _collect(pool, 1) == [(_uuid(1), 0)]
        os.kill(first, signal.SIGKILL)
        # The idle worker takes the first; the second needs a new worker, from a new forker (the
        # worker forked before holds nothing that keeps the dead one's socket open).
        assert pool.hand(_uuid(2)) is before
        worker = pool.hand(_uuid(3))
        assert _gone(first), "the pool collected it"
        assert sorted(_collect(pool, 2)) == [(_uuid(2), 3), (_uuid(3), 3)]
        assert pool.forker_pid != first and _state(pool.forker_pid) not in ("", "Z")
        assert _parent(worker.pid) == pool.forker_pid
        assert "the crunch-run forker has gone" in caplog.text
    finally:
        pool.close()
    assert _gone(pool.forker_pid), "a closed pool's forker exits"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


# The dispatcher's side in a process of its own, which hands a slow container to one worker,
# leaves a second idle and exits without a word: the idle one and the forker go at once, the
# busy one after its container.
_DISPATCHER_DIES = """
import sys, time
from pathlib import Path
from cwl_crunch.dispatch.backends.workers import Pool

root = Path(sys.argv[1])
def run(uuid):
    time.sleep(1.0 if uuid == "slow" else 0)
    (root / f"{uuid}.done").write_text("done")
    return 0
pool = Pool(run, lambda uuid: root / f"{uuid}.log")
busy = pool.hand("slow")
idle = pool.hand("quick")
while not pool.collect():
    time.sleep(0.01)
print(idle.pid, busy.pid, pool.forker_pid, flush=True)
"""


def test_workers_outlive_a_dispatcher_that_dies_only_as_long_as_their_container(tmp_path: Path) -> None:
    dispatcher = subprocess.run([sys.executable, "-c", _DISPATCHER_DIES, str(tmp_path)], capture_output=True,
                                text=True, timeout=30, check=True)
    idle, busy, forker = (int(pid) for pid in dispatcher.stdout.split())
    # (Orphans: whether they are collected once ended is up to the process they were handed to.)
    assert _ended(idle, timeout=0.5) and _ended(forker, timeout=0.5), "the idle worker and the forker have gone"
    assert _state(busy) not in ("", "Z") and not (tmp_path / "slow.done").exists(), "the busy one finishes first"
    assert _ended(busy)
    assert (tmp_path / "slow.done").read_text() == "done"


def test_a_container_finishing_while_the_backend_looks_is_not_counted_alive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.LocalBackend, "_run", lambda self, uuid: time.sleep(0.3) or 0)  # saved everything
    backend = local.LocalBackend(Capacity(1, 1 << 30), tmp_path / "dispatch", {}, Options(work_root=tmp_path / "work"))
    with pytest.raises(RuntimeError, match="once bound"):
        backend.start({"uuid": UUID})
    backend.bind("zzzzz-7ekkf-000000000000001")
    assert backend.pool is not None
    backend.start({"uuid": UUID})
    worker = backend.pool.workers[0]
    assert (backend.state_dir / f"{UUID}.pid").read_text() == f"{worker.pid} {worker.started}"

    checked = local._is_alive

    def after_it_ended(pid_file: Path) -> bool:  # the container ends after the first reaping, before this look
        time.sleep(0.6)
        return checked(pid_file)

    monkeypatch.setattr(local, "_is_alive", after_it_ended)
    assert backend.alive() == set()
    assert not (backend.state_dir / f"{UUID}.pid").exists()
    assert not (backend.state_dir / f"{UUID}.log").exists(), "an exit 0 with nothing left to look at: its log goes"
    assert backend.pool.workers == [worker] and worker.container is None, "the worker stays, for the next container"
    backend.pool.close()
    assert _gone(worker.pid)
