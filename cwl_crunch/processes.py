"""Telling processes apart by pid and start time (standard library only: crunch-run's workers,
the dispatcher and the embedded service use it)."""

from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> str:
    """The start time (clock ticks since boot) of a running process, to tell a recycled pid apart;
    "" if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]
