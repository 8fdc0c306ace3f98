"""A worker's cache of materialised collections (cwl_crunch.runner.keep): unused entries leave
after a day, entries a live crunch-run uses stay, and pruning runs at most once an hour."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cwl_crunch.runner.keep import Keep

OLD = time.time() - 2 * 24 * 3600
PDH = "a" * 64 + "+3"


def _entry(cache: Path, pdh: str, age: float | None = OLD) -> Path:
    entry = cache / pdh
    entry.mkdir(parents=True)
    (entry / "file.txt").write_text("abc")
    if age is not None:
        os.utime(entry, (age, age))
    return entry


def _keep(cache: Path) -> Keep:
    return Keep(api=None, blob_root=None, cache_dir=cache)  # type: ignore[arg-type] - only cached entries


def test_an_entry_unused_for_a_day_is_removed_with_its_lock(tmp_path: Path) -> None:
    _entry(tmp_path, PDH)
    (tmp_path / f"{PDH}.lock").touch()
    recent = _entry(tmp_path, "b" * 64 + "+3", age=None)
    half_built = tmp_path / ".aaaaaaaaaaaaaaaa-x1y2z3"  # left by a crunch-run killed while building
    half_built.mkdir()
    os.utime(half_built, (OLD, OLD))
    assert _keep(tmp_path).prune() == [PDH]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pruned", recent.name]


def test_an_entry_a_live_crunch_run_uses_stays(tmp_path: Path) -> None:
    _entry(tmp_path, PDH)
    # Another process materialises it (no API call: it is cached) and keeps running.
    user = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from cwl_crunch.runner.keep import Keep;"
        f"Keep(None, None, Path(sys.argv[1])).materialise('{PDH}'); print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout is not None and user.stdout.readline() == "held\n"
        os.utime(tmp_path / PDH, (OLD, OLD))  # as if that use had been long ago
        assert _keep(tmp_path).prune() == []
        assert (tmp_path / PDH / "file.txt").read_text() == "abc"
    finally:
        user.kill()
        user.wait()
    assert _keep(tmp_path).prune(every=0) == [PDH]  # once it is gone


def test_an_entry_is_held_until_its_container_is_over_not_until_its_process_ends(tmp_path: Path) -> None:
    """A crunch-run worker lives on after a container: `release` lets go of what that one used."""
    _entry(tmp_path, PDH)
    user = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from cwl_crunch.runner.keep import Keep;"
        f"keep = Keep(None, None, Path(sys.argv[1])); keep.materialise('{PDH}'); print('held', flush=True);"
        "sys.stdin.readline(); keep.release(); print('released', flush=True); time.sleep(60)"),
        str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdin is not None and user.stdout is not None and user.stdout.readline() == "held\n"
        os.utime(tmp_path / PDH, (OLD, OLD))
        assert _keep(tmp_path).prune(every=0) == []
        user.stdin.write("done\n")
        user.stdin.flush()
        assert user.stdout.readline() == "released\n"
        assert _keep(tmp_path).prune(every=0) == [PDH], "released while its process lives on"
    finally:
        user.kill()
        user.wait()


def test_using_an_entry_keeps_it_another_day(tmp_path: Path) -> None:
    entry = _entry(tmp_path, PDH)
    keep = _keep(tmp_path)
    assert keep.materialise(PDH) == entry
    assert keep.prune() == []
    assert entry.exists()


def test_pruning_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    keep = _keep(tmp_path)
    assert keep.prune() == []  # nothing to prune; the interval starts now
    _entry(tmp_path, PDH)
    assert keep.prune() == []
    assert keep.prune(every=0) == [PDH]
