"""The container's cgroups (v1): made with its limits, joined by its sandbox, read for its
statistics, and removed after it.

Joining is the slow part: the first cgroup move after a quiet spell takes 7-20 ms on the hosts
measured (the kernel waits out an RCU grace period to make the cgroup lock exclusive), unless
`warm_up` has started that wait already.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from . import ProcessSpec

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
JOIN_FAILED = 125  # the exit status of a shell that could not join (see `joining`)
JOIN_FAILED_MESSAGE = b"crunch-run: cannot join cgroup"


def group_paths(spec: ProcessSpec) -> list[Path]:
    return named_paths(spec.name)


def named_paths(name: str | None) -> list[Path]:
    return [CGROUP_ROOT / controller / "crunch" / (name or "unnamed") for controller in ("memory", "cpu")]


def warm_up() -> None:
    """Make the cgroup move that is about to come fast: in a thread, write this process's pid to
    its own memory cgroup's `cgroup.procs`, a move that changes nothing but takes the kernel's
    cgroup lock. The grace period the first writer after a quiet spell waits for (7-20 ms here)
    is then waited out beside crunch-run's staging and setup; a move starting while this one
    runs, or within about one grace period after it, waits for none of its own (0.2 ms instead
    of 7 ms, measured). If it cannot be written (not root, no memory hierarchy) nothing changes.
    """
    threading.Thread(target=_rewrite_own_group, name="cgroup-warm-up", daemon=True).start()


def _rewrite_own_group() -> None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                (CGROUP_ROOT / "memory" / path.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))
                return
    except (OSError, ValueError):
        pass


def create(name: str | None, ram: int | None, vcpus: float | None) -> list[Path]:
    """cgroup v1 groups limiting memory (`ram`) and CPU (`vcpus`), where the host lets us make them.

    Returns the groups the process must join (none: not root, cgroup v2 only, or no limits asked).
    """
    wanted = []
    memory, cpu = named_paths(name)
    if ram and (memory.parent.parent / "memory.limit_in_bytes").exists():
        wanted.append((memory, {"memory.limit_in_bytes": ram, "memory.memsw.limit_in_bytes": ram}))
    if vcpus and (cpu.parent.parent / "cpu.cfs_quota_us").exists():
        wanted.append((cpu, {"cpu.cfs_period_us": CPU_PERIOD_US, "cpu.cfs_quota_us": int(vcpus * CPU_PERIOD_US)}))
    sweep_stale([group.parent for group, _ in wanted])
    groups = []
    for group, settings in wanted:
        try:
            group.mkdir(parents=True, exist_ok=True)
            for name, value in settings.items():
                if (group / name).exists():  # memsw only exists with swap accounting
                    (group / name).write_text(str(value))
        except OSError:
            continue  # not allowed here: the runtime's rlimit fallback applies
        groups.append(group)
    return groups


STALE_CGROUP_SECONDS = 60.0
RELEASED_CACHE_MAX = 64 << 20  # page cache a finished container's memory cgroup has reclaimed at once


def release_page_cache(group: Path) -> None:
    """Reclaim the page cache still charged to a finished container's memory cgroup (files it was
    the first to read, such as its inputs), if there is little. Otherwise the removed group lingers,
    dying, until memory pressure frees that cache, and many of them slow the host: 1,400 made a
    500-step scatter 20% slower. A large cache (a big input other steps share) is left alone:
    evicting it would make them read it from disk again."""
    try:
        if int((group / "memory.usage_in_bytes").read_text()) <= RELEASED_CACHE_MAX:
            (group / "memory.force_empty").write_text("0")
    except (OSError, ValueError):
        pass  # gone already, or still in use (the caller retries)


def sweep_stale(parents: list[Path]) -> None:
    """Remove groups a killed crunch-run left behind. rmdir refuses a group that still has
    processes, and a group younger than a minute may be another crunch-run's, still starting."""
    now = time.time()
    for parent in parents:
        try:  # (the directory's entries say which are groups: only those are looked at)
            with os.scandir(parent) as entries:
                groups = [e.path for e in entries
                          if e.is_dir(follow_symlinks=False) and now - e.stat().st_mtime > STALE_CGROUP_SECONDS]
        except OSError:
            continue
        for group in groups:
            try:
                os.rmdir(group)
            except OSError:
                pass


def group_members(spec: ProcessSpec) -> list[int] | None:
    """The pids in the container's memory cgroup, if it has one."""
    try:
        return [int(line) for line in (group_paths(spec)[0] / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return None


def memory_usage(spec: ProcessSpec) -> tuple[int, int] | None:
    """(bytes in use, limit) of the container's memory cgroup, if it has one."""
    group = group_paths(spec)[0]
    try:
        return int((group / "memory.usage_in_bytes").read_text()), int((group / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return None


class Join(threading.Thread):
    """Moves a held bubblewrap's sandbox into its cgroups while bubblewrap builds it.

    The first cgroup move after a quiet spell takes 7-20 ms here (the kernel waits out an RCU
    grace period to make the cgroup lock exclusive; `warm_up` starts that wait earlier), and the
    sandbox's setup takes a few: side by side, they are off a short step's critical path. The
    sandbox's first process (bubblewrap's child, named on --info-fd) is moved before the gate
    opens, so the command, which it forks only then, starts inside the groups.
    """

    def __init__(self, info: int, groups: list[Path]) -> None:
        super().__init__(name="cgroup-join", daemon=True)
        self.info, self.groups = info, groups
        self.error: str | None = None
        self.start()

    def run(self) -> None:
        try:
            pid = _child_pid(self.info)
        finally:
            os.close(self.info)
        if pid is None:
            return  # bubblewrap failed before making the sandbox: its own error says why
        for group in self.groups:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except OSError as error:
                self.error = f"{JOIN_FAILED_MESSAGE.decode()} {group}: {error.strerror or error}"
                return

    def wait(self) -> str | None:
        """The error, once done (None: joined, or nothing to join)."""
        self.join()
        return self.error


def _child_pid(info: int) -> int | None:
    """The sandbox's pid, from bubblewrap's --info-fd JSON; None if it ended without one."""
    data = b""
    while chunk := os.read(info, 4096):
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue  # not all of it yet
        except (KeyError, TypeError):
            return None
    return None


# Not held, the cgroups are joined by a shell that then becomes bubblewrap, rather than in a `preexec_fn`:
# Python then starts the child with vfork instead of copying crunch-run's memory, and returns
# as soon as the shell runs, while the slow join goes on beside crunch-run's own work.
_JOIN_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    f'echo $$ 2>/dev/null > "$1/cgroup.procs" || {{ echo "{JOIN_FAILED_MESSAGE.decode()} $1" >&2; exit {JOIN_FAILED}; }}; '
    'shift; n=$((n - 1)); done; exec "$@"'
)


def joining(groups: list[Path]) -> list[str]:
    """The command prefix that moves the process into `groups` before it execs the rest."""
    if not groups:
        return []
    return ["/bin/sh", "-c", _JOIN_SCRIPT, "crunch-join", str(len(groups)), *(str(g) for g in groups)]
