"""DockerRuntime against a real podman (private configuration and storage), and bubblewrap as root."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cwl_crunch.runner.runtimes import (
    Bind,
    CommandNotStarted,
    ImageNotFound,
    ProcessSpec,
    RuntimeUnavailable,
)
from cwl_crunch.runner.runtimes.docker import DockerRuntime, archive_image_id
from tests.support.engines import BUSYBOX_IMAGE, PrivatePodman, podman_unavailable, require

MiB = 1024 * 1024


@pytest.fixture
def runtime(podman_environment: PrivatePodman, busybox_image: str) -> DockerRuntime:
    return DockerRuntime("podman")


def make_spec(command: list[str], **fields) -> ProcessSpec:
    fields.setdefault("cwd", "/")
    fields.setdefault("environment", {})
    fields.setdefault("binds", [])
    return ProcessSpec(command=command, image=BUSYBOX_IMAGE, name=f"test-{uuid.uuid4().hex[:12]}", **fields)


@contextmanager
def started(runtime: DockerRuntime, spec: ProcessSpec) -> Iterator[subprocess.Popen[bytes]]:
    """prepare and start; afterwards (even if the test failed) kill what is left and clean up."""
    runtime.prepare(spec)
    process = runtime.start(spec)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        runtime.cleanup(spec)


def run(runtime: DockerRuntime, spec: ProcessSpec) -> tuple[int, str, str]:
    """prepare, start, wait, cleanup: (exit code, stdout, stderr)."""
    with started(runtime, spec) as process:
        stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout.decode(), stderr.decode()


def host_interfaces() -> set[str]:
    return {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}


def wait_until_running(podman: PrivatePodman, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if podman.run("ps", "--filter", f"name=^{name}$", "--format", "{{.Names}}").stdout.split() == [name]:
            return
        time.sleep(0.1)
    pytest.fail(f"container {name} never showed as running")


# ---- output, cwd, environment, stdin ----


def test_echo_output_is_captured_and_streams_stay_separate(runtime: DockerRuntime) -> None:
    returncode, stdout, stderr = run(runtime, make_spec(["sh", "-c", "echo hello world; echo oops >&2"]))
    assert (returncode, stdout, stderr) == (0, "hello world\n", "oops\n")


def test_output_goes_to_the_files_given(runtime: DockerRuntime, tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        spec = make_spec(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], stdout=out, stderr=err)
        with started(runtime, spec) as process:
            assert process.wait(timeout=60) == 3
    assert (tmp_path / "out").read_text() == "to-out\n"
    assert (tmp_path / "err").read_text() == "to-err\n"


def test_cwd_is_honoured(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(["pwd"], cwd="/var/spool/cwl", binds=[Bind(tmp_path, "/var/spool/cwl", writable=True)])
    assert run(runtime, spec)[:2] == (0, "/var/spool/cwl\n")


def test_environment_reaches_the_command_but_not_the_command_line(runtime: DockerRuntime) -> None:
    environment = {
        "CRUNCH_API_TOKEN": "v2/secret-token",
        "SPACES": "  a b  ",
        "SIGNS": "x=y # z",
        "EMPTY": "",
        "MULTILINE": "one\ntwo",
    }
    script = 'printf "%s|" "$CRUNCH_API_TOKEN" "$SPACES" "$SIGNS" "$EMPTY" "$MULTILINE"'
    spec = make_spec(["sh", "-c", script], environment=environment)
    with started(runtime, spec) as process:
        stdout, _ = process.communicate(timeout=60)
    assert stdout.decode() == "v2/secret-token|  a b  |x=y # z||one\ntwo|"
    assert not any("secret-token" in argument for argument in process.args)


def test_stdin_comes_from_the_file_given(runtime: DockerRuntime, tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("line 1\nline 2\n")
    assert run(runtime, make_spec(["wc", "-l"], stdin=tmp_path / "input.txt"))[:2] == (0, "2\n")


# ---- mounts ----


def test_missing_stdin_file_means_the_command_cannot_start(runtime: DockerRuntime, tmp_path: Path) -> None:
    spec = make_spec(["cat"], stdin=tmp_path / "missing.txt")
    runtime.prepare(spec)
    with pytest.raises(CommandNotStarted, match="missing.txt"):
        runtime.start(spec)
    runtime.cleanup(spec)


def test_read_only_bind_is_not_writable_and_writable_one_is(runtime: DockerRuntime, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.txt").write_text("input\n")
    (tmp_path / "out").mkdir()
    binds = [Bind(tmp_path / "in", "/keep/in"), Bind(tmp_path / "out", "/var/spool/cwl", writable=True)]
    script = "cat /keep/in/data.txt; touch /keep/in/new; echo result > /var/spool/cwl/out.txt"
    returncode, stdout, stderr = run(runtime, make_spec(["sh", "-c", script], binds=binds))
    assert (returncode, stdout) == (0, "input\n")
    assert "Read-only file system" in stderr
    assert not (tmp_path / "in" / "new").exists()
    assert (tmp_path / "out" / "out.txt").read_text() == "result\n"


def test_paths_with_a_colon_are_bound(runtime: DockerRuntime, tmp_path: Path) -> None:
    (tmp_path / "a:b").mkdir()
    (tmp_path / "a:b" / "f").write_text("colon\n")
    binds = [Bind(tmp_path / "a:b", "/keep/c:d")]
    spec = make_spec(["sh", "-c", "cat /keep/c:d/f; touch /keep/c:d/g"], binds=binds)
    returncode, stdout, _ = run(runtime, spec)
    assert (returncode, stdout) == (1, "colon\n")  # readable, and read-only


# ---- network and resources ----


def test_no_network_unless_asked(runtime: DockerRuntime) -> None:
    command = ["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"]
    _, isolated, _ = run(runtime, make_spec(command))
    assert set(isolated.split()) == {"lo"}
    _, connected, _ = run(runtime, make_spec(command, network=True))
    assert set(connected.split()) == host_interfaces()  # the host's network (an API on its loopback)


def test_memory_and_cpu_limits_are_set(runtime: DockerRuntime) -> None:
    script = (
        "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max;"
        " else cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us; fi"
    )
    returncode, stdout, _ = run(runtime, make_spec(["sh", "-c", script], ram=64 * MiB, vcpus=0.5))
    assert returncode == 0
    memory, cpu = stdout.splitlines()
    assert int(memory) == 64 * MiB
    assert cpu.split()[0] == "50000"  # µs of CPU per 100000 µs period: half a CPU


def test_memory_limit_is_enforced(runtime: DockerRuntime) -> None:
    # dd fills a 150 MiB buffer before writing it: that cannot fit in 64 MiB.
    spec = make_spec(["dd", "if=/dev/zero", "of=/dev/null", "bs=150M", "count=1"], ram=64 * MiB)
    returncode, _, _ = run(runtime, spec)
    assert returncode == 128 + signal.SIGKILL  # the OOM killer


# ---- failures ----


SCRIPTS = {
    "missing-interpreter": "#!/bin/no-such-interpreter\necho hi\n",
    "windows-line-endings": "#!/bin/sh\r\necho hi\r\n",
}


@pytest.mark.parametrize(
    "command", ["no-such-command", "/bin/no/such/file", "/in/missing-interpreter", "/in/windows-line-endings"]
)
def test_missing_command_is_a_start_failure(runtime: DockerRuntime, command: str, tmp_path: Path) -> None:
    for name, text in SCRIPTS.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    returncode, _, stderr = run(runtime, make_spec([command], binds=[Bind(tmp_path, "/in")]))
    message = runtime.start_failure(returncode, stderr.encode())
    assert message is not None
    assert "could not execute the command" in message and "No such file or directory" in message


def test_non_executable_command_is_a_start_failure(runtime: DockerRuntime, tmp_path: Path) -> None:
    (tmp_path / "script").write_text("echo hi\n")
    spec = make_spec(["/in/script"], binds=[Bind(tmp_path, "/in")])
    returncode, _, stderr = run(runtime, spec)
    assert "Permission denied" in (runtime.start_failure(returncode, stderr.encode()) or "")


def test_missing_bind_source_is_a_start_failure(runtime: DockerRuntime, tmp_path: Path) -> None:
    returncode, _, stderr = run(runtime, make_spec(["true"], binds=[Bind(tmp_path / "missing", "/in")]))
    message = runtime.start_failure(returncode, stderr.encode())
    assert returncode == 125 and message is not None and "failed before the command started" in message


@pytest.mark.parametrize("script", ["exit 1", "exit 127", "echo 'Error: mine' >&2; exit 125", "no-such-tool"])
def test_the_commands_own_failures_are_not_start_failures(runtime: DockerRuntime, script: str) -> None:
    returncode, _, stderr = run(runtime, make_spec(["sh", "-c", f"echo started >&2; {script}"]))
    assert returncode != 0
    assert runtime.start_failure(returncode, stderr.encode()) is None


def test_missing_image(runtime: DockerRuntime) -> None:
    spec = make_spec(["true"])
    spec.image = "localhost/no-such-image:1"
    with pytest.raises(ImageNotFound, match="no-such-image"):
        runtime.prepare(spec)


def test_an_engine_failing_to_look_an_image_up_is_an_infrastructure_failure(
        runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Not "image not found" (cause setup, never retried): here podman cannot use its TMPDIR."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "removed"))
    spec = make_spec(["true"])
    spec.image = BUSYBOX_IMAGE
    with pytest.raises(RuntimeUnavailable, match="cannot inspect image") as raised:
        runtime.prepare(spec)
    assert raised.value.cause == "infrastructure"


def test_no_engine_installed_is_a_setup_failure() -> None:
    with pytest.raises(RuntimeUnavailable, match="no container engine") as raised:
        DockerRuntime("/nonexistent/podman").prepare(make_spec(["true"]))
    assert raised.value.cause == "setup"


def test_broken_engine_is_an_infrastructure_failure(tmp_path: Path) -> None:
    engine = tmp_path / "podman"
    engine.write_text("#!/bin/sh\necho 'Error: cannot open storage: database is locked' >&2\nexit 125\n")
    engine.chmod(0o755)
    with pytest.raises(RuntimeUnavailable, match="database is locked") as raised:
        DockerRuntime(str(engine)).prepare(make_spec(["true"]))
    assert raised.value.cause == "infrastructure"


# ---- signals and cleanup ----


def test_sigterm_to_the_process_group_stops_the_container(
    runtime: DockerRuntime, podman_environment: PrivatePodman
) -> None:
    spec = make_spec(["sleep", "600"])
    with started(runtime, spec) as process:
        wait_until_running(podman_environment, spec.name)
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=15) == 128 + signal.SIGTERM  # forwarded; sleep died of it
    runtime.cleanup(spec)  # idempotent
    assert spec.name not in podman_environment.containers()


@pytest.mark.parametrize("delay", [0, 0.05, 0.1])
def test_sigterm_while_the_container_is_being_created_leaves_nothing_after_cleanup(
    runtime: DockerRuntime, podman_environment: PrivatePodman, delay: float
) -> None:
    # A signal that reaches podman while it sets the container up can leave the container behind
    # (and podman may even exit 0): cleanup removes it by name.
    spec = make_spec(["sleep", "600"])
    with started(runtime, spec) as process:
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=15)
    assert spec.name not in podman_environment.containers()


def test_cleanup_removes_a_container_whose_client_was_killed(
    runtime: DockerRuntime, podman_environment: PrivatePodman
) -> None:
    spec = make_spec(["sh", "-c", "trap '' TERM; sleep 600"])  # ignores SIGTERM, as some tools do
    with started(runtime, spec) as process:
        wait_until_running(podman_environment, spec.name)
        os.killpg(process.pid, signal.SIGKILL)  # crunch-run's last resort after the grace period
        process.wait(timeout=15)
        assert spec.name in podman_environment.containers()  # SIGKILL cannot be forwarded
    assert spec.name not in podman_environment.containers()


# ---- image tarballs ----


@pytest.fixture
def recording_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A fresh private podman with no image, and a `podman` wrapper that logs each command it runs."""
    require(podman_unavailable())
    podman = PrivatePodman()
    for name, value in podman.environment.items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "commands.log"
    wrapper = tmp_path / "bin" / "podman"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec /usr/bin/podman "$@"\n')
    wrapper.chmod(0o755)
    yield wrapper, log
    podman.close()


def test_load_tarball_loads_once_and_returns_the_same_id(
    recording_podman: tuple[Path, Path], busybox_tarball: Path
) -> None:
    wrapper, log = recording_podman
    runtime = DockerRuntime(str(wrapper))
    first = runtime.load_tarball(busybox_tarball)
    second = DockerRuntime(str(wrapper)).load_tarball(busybox_tarball)  # e.g. the next crunch-run
    assert first == second == archive_image_id(busybox_tarball)
    assert log.read_text().split().count("load") == 1
    spec = ProcessSpec(["echo", "from the tarball"], "/", {}, [], image=first)
    assert run(runtime, spec)[:2] == (0, "from the tarball\n")


def test_load_tarball_of_a_broken_file(recording_podman: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "broken.tar").write_bytes(b"not a tarball")
    with pytest.raises(ImageNotFound, match="could not load"):
        DockerRuntime(str(recording_podman[0])).load_tarball(tmp_path / "broken.tar")


# ---- bubblewrap (the local runtime's tool; the runtime itself is tested elsewhere) ----


def test_bubblewrap_runs_here(bwrap: str, tmp_path: Path) -> None:
    script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1; ls -A /tmp | wc -l; touch /etc/crunch-test 2>&1"
    result = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc",
         "--die-with-parent", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert lines[:2] == ["lo", "0"]  # only loopback; a fresh empty /tmp
    assert "Read-only file system" in result.stdout
    assert not Path("/etc/crunch-test").exists()
