"""How crunch-run starts the container's process: one small interface, one module per runtime.

- `local`  (runtimes/local.py): the host's filesystem read-only in a private mount namespace
  (bubblewrap), the container's mounts bound at their targets.
- `docker` (runtimes/docker.py): a docker-compatible engine CLI (`docker` or `podman`).

crunch-run stages the mounts on the host, describes the process as a `ProcessSpec`, asks a
runtime to `prepare` (check the tool, load the image) and `start` it, then owns the process:
it reads its output, signals it, waits for it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

# SPEC §7 step 5: what a command that could not be started is reported as.
NOT_STARTED = "command {!r} is missing, the #! interpreter is missing, or the script has Windows line endings"


class RuntimeUnavailable(Exception):
    """The runtime cannot work on this host (tool missing, engine unreachable): cause `infrastructure`
    or `setup`, as `cause` says."""

    def __init__(self, message: str, cause: str = "setup") -> None:
        super().__init__(message)
        self.cause = cause


class ImageNotFound(Exception):
    """The container image does not exist (cause `setup`)."""


class CommandNotStarted(Exception):
    """The command cannot be started (missing, not executable): cause `setup`."""


@dataclass(frozen=True)
class Bind:
    """A host path that appears at `target` inside the container."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class ProcessSpec:
    command: list[str]
    cwd: str
    environment: dict[str, str]
    binds: list[Bind]
    # Where the process's standard streams go on the host: None → a pipe crunch-run reads.
    stdin: Path | None = None
    stdout: IO[bytes] | int | None = None
    stderr: IO[bytes] | int | None = None
    network: bool = False  # runtime_constraints.API
    ram: int | None = None  # bytes
    vcpus: float | None = None
    image: str | None = None  # an engine image reference or loaded image id (docker runtime only)
    # Host paths the process must not see (the service's data directory, token files): masked
    # with an empty tmpfs by the local runtime. The docker runtime never shows the host anyway.
    hidden: list[Path] = field(default_factory=list)
    name: str = ""  # e.g. the container uuid: names the engine container, for cleanup


class Runtime(Protocol):
    name: str
    # True: `start(spec, held=True)` sets the process up but holds it before the command runs,
    # until `release` (crunch-run overlaps that setup with its Running update).
    holds_start: bool

    def prepare(self, spec: ProcessSpec) -> None:
        """Check the runtime works here and the image is available (raise RuntimeUnavailable/ImageNotFound)."""

    def start(self, spec: ProcessSpec, held: bool = False) -> subprocess.Popen[bytes]:
        """Start the process in its own process group (a signal reaches everything it started);
        with `held` (only where `holds_start`), stop short of running the command.

        Raises CommandNotStarted when it can tell before starting that the command cannot run.
        """

    def release(self, process: subprocess.Popen[bytes]) -> None:
        """Let a held process run its command."""

    def abandon(self, process: subprocess.Popen[bytes]) -> None:
        """Kill a held process before its command ran."""

    def start_failure(self, returncode: int, stderr_head: bytes) -> str | None:
        """After the process exited: if it never really started (the runtime, not the command,
        failed: e.g. the executable is missing in the image), why; else None."""

    def cleanup(self, spec: ProcessSpec | None) -> None:
        """Remove what `start` left behind (engine containers); idempotent. `spec` is None when
        crunch-run failed before it had one."""

    def memory_usage(self, spec: ProcessSpec) -> tuple[int, int] | None:
        """(bytes in use, limit) of the running container as a whole, where the runtime can tell."""

    def members(self, spec: ProcessSpec) -> list[int] | None:
        """The pids of the running container, where the runtime can tell (else its process tree counts)."""


def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Return when `process` has exited or `timeout` seconds have passed, whichever is first.

    On Linux this waits on a pidfd, so an exit is seen at once; `Popen.wait(timeout)` polls with
    sleeps growing to 50 ms, which a short container would spend mostly waiting to be noticed.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux, an old kernel, or already reaped
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)


def stop_process(process: subprocess.Popen[bytes], grace: float, why: str, say: Callable[[str], None]) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace` seconds; each step said with `say`."""
    if process.poll() is not None:
        return
    say(f"stopping the process: {why}")
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        say(f"still running after {grace:g} s: SIGKILL")
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
