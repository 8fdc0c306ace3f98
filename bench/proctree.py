"""Running a command in its own session, timed, with the peak summed RSS of its process tree
(read from /proc every POLL_S), and killing whatever it leaves behind. Used by cwl_bench.py."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.1


def _proc_table() -> dict[int, tuple[int, int]]:
    """Map every live (not zombie) pid to (parent pid, session id), read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), int(fields[3]))
        except (OSError, ValueError):
            pass
    return table


def tree_pids(root: int) -> list[int]:
    """Pids of root's descendants and of everything left in its session (it leads one)."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(kids.get(pid, []))
    found.update(pid for pid, (_, sid) in table.items() if sid == root)
    return [pid for pid in found if pid in table]


def tree_rss(root: int) -> tuple[int, int]:
    """Summed resident set size in bytes and process count of root's tree."""
    total, count = 0, 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            count += 1
        except (OSError, ValueError, IndexError):
            pass
    return total, count


class Poller(threading.Thread):
    """Poll a process tree's summed RSS every POLL_S until stopped; keep the peaks."""

    def __init__(self, pid: int) -> None:
        """Prepare to poll the tree of pid (started by start())."""
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_procs = pid, 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until stop() is called."""
        while not self.stopped.is_set():
            rss, count = tree_rss(self.pid)
            self.peak, self.peak_procs = max(self.peak, rss), max(self.peak_procs, count)
            self.stopped.wait(POLL_S)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self.stopped.set()
        self.join()


def kill_session(pid: int) -> int:
    """SIGKILL whatever is left in the process group/session that pid leads; return how many."""
    left = [p for p in tree_pids(pid) if p != pid]
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(left)


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, bool]:
    """Wait for proc; on timeout SIGTERM its process group and give it 10 s. (rc, timed out)."""
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=10), True
        except (subprocess.TimeoutExpired, ProcessLookupError):
            return None, True


def execute(cmd: list[str], cwd: Path, env: dict[str, str], logdir: Path, timeout: float) -> dict:
    """Run cmd in its own session, timed and polled; return wall time, rc, peaks, stragglers."""
    with open(logdir / "stdout", "wb") as out, open(logdir / "stderr", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        poller = Poller(proc.pid)
        poller.start()
        rc = None
        try:
            rc, timed_out = _wait(proc, timeout)
            wall = time.perf_counter() - t0
        finally:  # also on Ctrl-C: the runner is in its own session and would not see it
            poller.stop()
            stragglers = kill_session(proc.pid)
            if rc is None:
                rc = proc.wait()
    return {"rc": rc, "timed_out": timed_out, "wall_s": wall, "peak": poller.peak,
            "procs": poller.peak_procs, "stragglers": stragglers}
