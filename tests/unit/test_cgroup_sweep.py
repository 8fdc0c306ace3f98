"""Removing cgroups a killed crunch-run left behind: only groups (directories), only old ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cwl_crunch.runner.runtimes import cgroups


def test_only_groups_older_than_a_minute_are_removed_and_files_and_busy_groups_stay(tmp_path: Path) -> None:
    parent = tmp_path / "memory" / "crunch"
    old, young, busy = (parent / name for name in ("old", "young", "busy"))
    for group in (old, young, busy):
        group.mkdir(parents=True)
    (busy / "cgroup.procs").write_text("")  # rmdir refuses it, as the kernel refuses a group with processes
    (parent / "memory.limit_in_bytes").write_text("")  # the parent's own control files
    stale = time.time() - cgroups.STALE_CGROUP_SECONDS - 5
    for path in (old, busy, parent / "memory.limit_in_bytes"):
        os.utime(path, (stale, stale))

    cgroups.sweep_stale([parent, tmp_path / "missing"])

    assert sorted(p.name for p in parent.iterdir()) == ["busy", "memory.limit_in_bytes", "young"]
