"""What crunchstat.txt records: the resource use of a container's processes, read from /proc."""

from __future__ import annotations

import os
import platform
import resource
import threading
from collections.abc import Callable
from pathlib import Path

from .logs import LogFile

MEMORY_WARNING = "container using over 90% of memory"


def node_facts(engine: str) -> dict[str, object]:
    """node.json: the host a container ran on."""
    return {"hostname": platform.node(), "cpus": os.cpu_count(), "ram": host_ram(), "engine": engine,
            "python": platform.python_version()}


def host_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def usage(pid: int, members: Callable[[], list[int] | None] = lambda: None) -> str:
    """CPU seconds and resident memory of the process group led by `pid` (crunchstat line).

    `members`: the pids that may belong to it (e.g. its cgroup's), when known; else every process
    on the host is looked at, which costs milliseconds per line on a busy host."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = rss = 0
    count = 0
    known = members()
    candidates = [Path("/proc") / str(p) for p in known] if known is not None else Path("/proc").iterdir()
    for entry in candidates:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != pid:  # process group id
            continue
        count += 1
        user += int(fields[11])
        system += int(fields[12])
        rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return f"cpu {user / ticks:.2f} user {system / ticks:.2f} sys; mem {rss} rss; processes {count}"


def ended_early() -> str:
    """crunchstat's line for a process that ended before its first sample: what the kernel
    accounted to the children this process has waited for (the sandbox and what ran in it)."""
    spent = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (f"cpu {spent.ru_utime:.2f} user {spent.ru_stime:.2f} sys; mem {spent.ru_maxrss * 1024} max rss;"
            " ended before the first sample")


def record(pid: int, memory: Callable[[], tuple[int, int] | None], log: LogFile, warn: Callable[[str], None],
           interval: float, stop: threading.Event,
           members: Callable[[], list[int] | None] = lambda: None) -> None:
    """A line of resource use every `interval` until `stop`; `warn` once when memory nears its limit.

    `memory`: (bytes used, limit) of the container's memory cgroup, when it has one; `members`: see `usage`.
    """
    warned = False
    while True:
        line = usage(pid, members)
        current = memory()
        if current is not None:
            used, limit = current
            line += f"; cgroup mem {used} of {limit}"
            if used > 0.9 * limit and not warned:
                warned = True
                warn(MEMORY_WARNING)
        log.write(line)
        if stop.wait(interval):
            return
