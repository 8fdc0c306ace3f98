"""What crunchstat.txt records: the resource use of a container's processes, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path


def host_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def usage(pid: int) -> str:
    """CPU seconds and resident memory of the process group led by `pid` (crunchstat line)."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = rss = 0
    count = 0
    for entry in Path("/proc").iterdir():
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
