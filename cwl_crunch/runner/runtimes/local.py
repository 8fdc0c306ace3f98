"""The local runtime: the host's filesystem, read-only, in a private mount namespace (bubblewrap).

The container's mounts appear at their targets even where the host has no such directory
(`/keep/in`, `/var/spool/cwl`): the host root is not bound as one piece but "carved" — every
directory on the way to a target becomes a fresh tmpfs holding read-only binds of the host's
entries beside it, so a target can be created at any depth without touching the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path, PurePosixPath

from . import NOT_STARTED, Bind, CommandNotStarted, ProcessSpec, RuntimeUnavailable

# The host's pseudo-filesystems are replaced by private ones.
_SPECIAL = {"/proc": ["--proc", "/proc"], "/dev": ["--dev", "/dev"], "/tmp": ["--tmpfs", "/tmp"]}


class LocalRuntime:
    name = "local"

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""

    def prepare(self, spec: ProcessSpec) -> None:
        if not self.bwrap:
            raise RuntimeUnavailable("the local runtime needs bubblewrap (bwrap), which is not installed on this worker")

    def arguments(self, spec: ProcessSpec) -> list[str]:
        """The bwrap command line for `spec` (without the command)."""
        targets = [PurePosixPath(b.target) for b in spec.binds]
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if not spec.network:
            args.append("--unshare-net")
        args += _carve(Path("/"), targets)
        for bind in sorted(spec.binds, key=lambda b: len(PurePosixPath(b.target).parts)):
            args += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
        for hidden in spec.hidden:
            if hidden.exists():
                args += ["--tmpfs", str(hidden)]
        args += ["--chdir", spec.cwd]
        return args

    def start(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        _check_command(spec)
        stdin = spec.stdin.open("rb") if spec.stdin else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                [*self.arguments(spec), "--", *spec.command],
                stdin=stdin,
                stdout=spec.stdout if spec.stdout is not None else subprocess.PIPE,
                stderr=spec.stderr if spec.stderr is not None else subprocess.PIPE,
                env=spec.environment,
                start_new_session=True,
                preexec_fn=_limits(spec),
            )
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()

    def start_failure(self, returncode: int, stderr_head: bytes) -> str | None:
        if returncode == 1 and stderr_head.startswith(b"bwrap: "):
            return stderr_head.decode(errors="replace").splitlines()[0]
        return None

    def cleanup(self, spec: ProcessSpec) -> None:
        """Nothing outlives bwrap (`--die-with-parent`, own pid namespace)."""


def _carve(directory: Path, targets: list[PurePosixPath]) -> list[str]:
    """bwrap arguments showing `directory` read-only, with room made for `targets` below it."""
    inside = [t for t in targets if t != PurePosixPath(directory) and PurePosixPath(directory) in t.parents]
    if directory != Path("/") and not inside:
        return ["--ro-bind", str(directory), str(directory)]
    next_parts = {PurePosixPath(directory) / t.relative_to(directory).parts[0] for t in inside}
    args: list[str] = [] if directory == Path("/") else ["--tmpfs", str(directory)]
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        path = str(entry)
        if path in _SPECIAL and directory == Path("/"):
            continue
        if PurePosixPath(path) in next_parts and not any(t == PurePosixPath(path) for t in targets):
            if entry.is_dir() and not entry.is_symlink():
                args += _carve(entry, targets)
            continue  # a target's parent that is not a plain directory: the bind creates it
        if PurePosixPath(path) in targets:
            continue  # the bind itself goes there
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), path]
        else:
            args += ["--ro-bind-try", path, path]
    if directory == Path("/"):
        for special in _SPECIAL.values():
            args += special
    return args


def _check_command(spec: ProcessSpec) -> None:
    """Fail before starting when the executable cannot be found or run (SPEC §7 step 5)."""
    program = spec.command[0] if spec.command else ""
    hint = NOT_STARTED
    if not program:
        raise CommandNotStarted("the command is empty")
    candidates = [program] if "/" in program else [
        str(PurePosixPath(d) / program) for d in spec.environment.get("PATH", os.defpath).split(":") if d
    ]
    if "/" in program and not program.startswith("/"):
        candidates = [str(PurePosixPath(spec.cwd) / program)]
    for candidate in candidates:
        host = _host_path(candidate, spec.binds)
        if host is not None and host.is_file() and os.access(host, os.X_OK):
            return
    raise CommandNotStarted(hint.format(program))


def _host_path(path: str, binds: list[Bind]) -> Path | None:
    """Where a path inside the container lives on the host (the deepest bind wins)."""
    inner = PurePosixPath(path)
    for bind in sorted(binds, key=lambda b: len(PurePosixPath(b.target).parts), reverse=True):
        target = PurePosixPath(bind.target)
        if inner == target or target in inner.parents:
            return Path(bind.source) / inner.relative_to(target)
    if inner.parts[1:2] == ("tmp",):
        return None  # the private /tmp starts empty
    return Path(inner)


def _limits(spec: ProcessSpec):  # type: ignore[no-untyped-def]
    """Resource limits the host allows without cgroup delegation: address space from `ram`."""
    if not spec.ram:
        return None

    def apply() -> None:
        import resource

        # Generous: address space is not resident memory (runtimes reserve more than they use).
        limit = max(spec.ram * 4, 1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    return apply
