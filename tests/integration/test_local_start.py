"""The local runtime starting real bubblewrap processes: held before the command until released,
killed unrun when abandoned, and moved into the container's cgroups before the command runs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cwl_crunch.runner.runtimes import Bind, ProcessSpec, cgroups
from cwl_crunch.runner.runtimes.cgroups import JOIN_FAILED
from cwl_crunch.runner.runtimes.local import LocalRuntime
from tests.support.cluster import require_bwrap


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


def spec(tmp_path: Path, command: list[str], **overrides) -> ProcessSpec:
    (tmp_path / "out").mkdir(exist_ok=True)
    values = dict(command=command, cwd="/var/spool/cwl", environment={"PATH": "/usr/bin:/bin"},
                  binds=[Bind(tmp_path / "out", "/var/spool/cwl", writable=True)], name=f"test-{tmp_path.name}")
    values.update(overrides)
    return ProcessSpec(**values)


def finish(runtime: LocalRuntime, given: ProcessSpec, process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = process.communicate(timeout=30)
    runtime.cleanup(given)
    return process.returncode, out, err


def test_a_held_process_runs_its_command_only_once_released(tmp_path: Path) -> None:
    runtime = LocalRuntime()
    given = spec(tmp_path, ["sh", "-c", "echo ran > marker; echo done"])
    process = runtime.start(given, held=True)
    time.sleep(0.3)
    assert process.poll() is None, "the held process must wait"
    assert not (tmp_path / "out" / "marker").exists(), "the command ran before it was released"
    runtime.release(process)
    assert finish(runtime, given, process)[:2] == (0, b"done\n")
    assert (tmp_path / "out" / "marker").read_text() == "ran\n"


def test_an_abandoned_process_never_runs_its_command(tmp_path: Path) -> None:
    runtime = LocalRuntime()
    given = spec(tmp_path, ["sh", "-c", "echo ran > marker"])
    process = runtime.start(given, held=True)
    runtime.abandon(process)
    assert process.returncode == -9
    time.sleep(0.1)
    assert not (tmp_path / "out" / "marker").exists()


def test_a_process_not_held_runs_at_once(tmp_path: Path) -> None:
    runtime = LocalRuntime()
    given = spec(tmp_path, ["echo", "hello"])
    assert finish(runtime, given, runtime.start(given))[:2] == (0, b"hello\n")


def test_the_command_runs_inside_the_containers_memory_cgroup(tmp_path: Path) -> None:
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller on this host: the rlimit fallback applies instead")
    runtime = LocalRuntime()
    given = spec(tmp_path, ["cat", "/proc/self/cgroup"], ram=64 << 20)
    process = runtime.start(given, held=True)
    runtime.release(process)
    code, out, err = finish(runtime, given, process)
    assert code == 0, err
    memory = [line for line in out.decode().splitlines() if line.split(":")[1] == "memory"]
    assert memory == [memory[0].rsplit(":", 1)[0] + f":/crunch/{given.name}"]


def test_a_cgroup_that_cannot_be_joined_is_a_start_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-cgroup"
    monkeypatch.setattr(cgroups, "create", lambda name, ram, vcpus: [missing])
    runtime = LocalRuntime()
    given = spec(tmp_path, ["sh", "-c", "echo ran > marker"])
    process = runtime.start(given, held=True)
    runtime.release(process)  # the sandbox could not be moved: killed, never released
    code, _, err = finish(runtime, given, process)
    assert code == -9
    assert runtime.start_failure(code, b"").startswith(f"crunch-run: cannot join cgroup {missing}: ")
    assert not (tmp_path / "out" / "marker").exists()


def test_not_held_a_cgroup_that_cannot_be_joined_is_a_start_failure_too(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-cgroup"
    monkeypatch.setattr(cgroups, "create", lambda name, ram, vcpus: [missing])
    runtime = LocalRuntime()
    given = spec(tmp_path, ["sh", "-c", "echo ran > marker"])
    code, _, err = finish(runtime, given, runtime.start(given))
    assert code == JOIN_FAILED
    assert runtime.start_failure(code, err.splitlines()[0]) == f"crunch-run: cannot join cgroup {missing}"
    assert not (tmp_path / "out" / "marker").exists()


def memory_cgroup() -> str:
    """This process's memory cgroup (cgroup v1); skips the test on a host without one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if "memory" in line.split(":")[1].split(","):
            return line.split(":", 2)[2]
    pytest.skip("no cgroup v1 memory hierarchy on this host")


def test_groups_made_early_are_the_ones_joined_and_go_even_without_a_start(tmp_path: Path) -> None:
    """crunch-run makes a container's cgroups as soon as it knows the container (`expect`),
    before staging; the sandbox then joins those, and they go however crunch-run ends."""
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller on this host: the rlimit fallback applies instead")
    given = spec(tmp_path, ["cat", "/proc/self/cgroup"], ram=64 << 20, vcpus=1)
    memory, cpu = cgroups.group_paths(given)
    runtime = LocalRuntime()
    runtime.expect(given.name, given.ram, given.vcpus)
    assert int((memory / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == cgroups.CPU_PERIOD_US
    process = runtime.start(given, held=True)
    runtime.release(process)
    code, out, err = finish(runtime, given, process)
    assert code == 0, err
    assert f"memory:/crunch/{given.name}" in out.decode()
    assert not memory.exists() and not cpu.exists()

    unstarted = LocalRuntime()  # e.g. staging failed: crunch-run never had a spec
    unstarted.expect(given.name, given.ram, given.vcpus)
    assert memory.exists()
    unstarted.cleanup(None)
    assert not memory.exists() and not cpu.exists()


def test_the_warm_up_writes_crunch_run_into_its_own_memory_cgroup(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "memory" / memory_cgroup().lstrip("/")
    own.mkdir(parents=True)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    cgroups._rewrite_own_group()
    assert (own / "cgroup.procs").read_text() == str(os.getpid())


def test_the_warm_up_leaves_crunch_run_where_it_was() -> None:
    """Done for real, the rewrite takes the kernel's cgroup lock (that is the point) and moves nothing."""
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller on this host")
    before = memory_cgroup()
    cgroups.warm_up()
    deadline = time.monotonic() + 5
    while any(t.name == "cgroup-warm-up" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not any(t.name == "cgroup-warm-up" for t in threading.enumerate())
    assert memory_cgroup() == before
