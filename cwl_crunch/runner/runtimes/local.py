"""The local runtime: the host's filesystem, read-only, in a private mount namespace (bubblewrap).

The process is started held (`--block-fd`): bubblewrap builds the sandbox, then waits for a byte
before running the command. Three things happen side by side: bubblewrap's setup, the sandbox's
move into its cgroups (a thread here), and crunch-run recording Running. The command starts once
all are done. The first cgroup move after a quiet spell waits out a kernel grace period (7-20 ms
on the hosts measured), so crunch-run makes the groups and starts that wait before staging
(`expect`), and the move itself then takes a fraction of a millisecond.

The container's mounts appear at their targets even where the host has no such directory
(`/keep/in`, `/var/spool/cwl`): the host root is not bound as one piece but "carved" — a
directory lacking room for a target becomes a fresh tmpfs holding read-only binds of the host's
entries beside it, so a target can be created at any depth without touching the host.
"""

from __future__ import annotations

import os
import posixpath
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path, PurePosixPath

from . import (
    NOT_STARTED,
    Bind,
    CommandNotStarted,
    ProcessSpec,
    RuntimeUnavailable,
    cgroups,
)

# The host's pseudo-filesystems are replaced by private ones.
_SPECIAL = {"/proc": ["--proc", "/proc"], "/dev": ["--dev", "/dev"], "/tmp": ["--tmpfs", "/tmp"]}


class LocalRuntime:
    name = "local"
    holds_start = True

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self._gates: dict[int, int] = {}  # pid of a held process → the pipe end that releases it
        self._joins: dict[int, cgroups.Join] = {}  # pid of a held process → its sandbox joining its cgroups
        self._join_error: str | None = None
        self._early: tuple[str, list[Path]] | None = None  # (container, its cgroups), made by `expect`

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
        args += _masks(spec.hidden, targets)
        args += ["--chdir", spec.cwd]
        return args

    def expect(self, name: str, ram: int | None, vcpus: float | None) -> None:
        """Told as soon as crunch-run knows which container will run here: its cgroups are made
        now, and the kernel's wait before the first cgroup move starts now too
        (`cgroups.warm_up`), beside staging; the sandbox joins the groups about 10 ms later.
        They are made first because making a cgroup waits for any move under way."""
        self._early = (name, cgroups.create(name, ram, vcpus))
        if self._early[1]:
            cgroups.warm_up()

    def start(self, spec: ProcessSpec, held: bool = False) -> subprocess.Popen[bytes]:
        _check_command(spec)
        early = self._early
        groups = early[1] if early is not None and early[0] == spec.name else cgroups.create(spec.name, spec.ram, spec.vcpus)
        arguments = self.arguments(spec)
        # Held, the sandbox joins its cgroups from here while bubblewrap builds it (--info-fd
        # names it); otherwise a shell joins them before it becomes bubblewrap.
        joins_later = held and bool(groups)
        ours: list[int] = []  # pipe ends kept here
        theirs: list[int] = []  # pipe ends handed to bubblewrap
        if held:
            gate_out, gate_in = os.pipe()
            arguments += ["--block-fd", str(gate_out)]
            ours.append(gate_in)
            theirs.append(gate_out)
        if joins_later:
            info_in, info_out = os.pipe()
            arguments += ["--info-fd", str(info_out)]
            ours.append(info_in)
            theirs.append(info_out)
        stdin = spec.stdin.open("rb") if spec.stdin else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                [*([] if joins_later else cgroups.joining(groups)), *arguments, "--", *spec.command],
                stdin=stdin,
                stdout=spec.stdout if spec.stdout is not None else subprocess.PIPE,
                stderr=spec.stderr if spec.stderr is not None else subprocess.PIPE,
                env=spec.environment,
                start_new_session=True,
                pass_fds=tuple(theirs),
                preexec_fn=_address_space_limit(spec, groups),
            )
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()
            for fd in theirs:
                os.close(fd)
        if held:
            self._gates[process.pid] = gate_in
        if joins_later:
            self._joins[process.pid] = cgroups.Join(info_in, groups)
        return process

    def release(self, process: subprocess.Popen[bytes]) -> None:
        """Let the command start, once the sandbox is in its cgroups; if it could not join them,
        kill it unrun instead (`start_failure` then says why)."""
        join = self._joins.pop(process.pid, None)
        if join is not None and (error := join.wait()) is not None:
            self._join_error = error
            self.abandon(process)
            return
        gate = self._gates.pop(process.pid)
        try:
            os.write(gate, b"1")
        except BrokenPipeError:
            pass  # it died while held: its exit status tells why
        finally:
            os.close(gate)

    def abandon(self, process: subprocess.Popen[bytes]) -> None:
        """Kill it while held: the gate is closed only afterwards, since end of file releases it too."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        os.close(self._gates.pop(process.pid))
        join = self._joins.pop(process.pid, None)
        if join is not None:
            join.wait()  # ends with bubblewrap, which held the other end of its pipe

    def start_failure(self, returncode: int, stderr_head: bytes) -> str | None:
        if self._join_error is not None:
            return self._join_error
        if (returncode == 1 and stderr_head.startswith(b"bwrap: ")) or (
                returncode == cgroups.JOIN_FAILED and stderr_head.startswith(cgroups.JOIN_FAILED_MESSAGE)):
            return stderr_head.decode(errors="replace").splitlines()[0]
        return None

    def cleanup(self, spec: ProcessSpec | None) -> None:
        """Nothing outlives bwrap (`--die-with-parent`, own pid namespace); its cgroups go once
        the kernel has let go of the last exiting process (a few milliseconds). Without a spec
        (crunch-run failed before it had one), the groups `expect` made go."""
        if spec is not None:
            name = spec.name
        elif self._early is not None:
            name = self._early[0]
        else:
            return
        memory, cpu = cgroups.named_paths(name)
        for group in (memory, cpu):
            delay = 0.001
            while delay < 1.0:  # about 1 s in all; a group left behind is swept by a later start
                try:
                    if group is memory:
                        cgroups.release_page_cache(group)
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(delay)
                    delay *= 2


    def memory_usage(self, spec: ProcessSpec) -> tuple[int, int] | None:
        return cgroups.memory_usage(spec)

    def members(self, spec: ProcessSpec) -> list[int] | None:
        return cgroups.group_members(spec)


def _carve(directory: Path, targets: list[PurePosixPath], shown: bool = False) -> list[str]:
    """bwrap arguments showing `directory` read-only, with room made for `targets` below it;
    `shown`: it is visible already, inside a directory bound whole.

    A directory is carved (a tmpfs holding binds of its entries) only where a target needs a
    place the host lacks. One whose targets all lie deeper, below host directories, is bound whole
    and those are carved instead: `/var/spool/cwl` costs a bind of `/` and a carved `/var/spool`,
    not also one bind per entry of `/` and of `/var`. Each mount costs bubblewrap a reading of
    the mount table, for every container: with the root carved (a target such as `/keep` that
    the host lacks) a short container's sandbox takes about 2.5 ms more to build and tear down.
    """
    here = PurePosixPath(directory)
    root = directory == Path("/")
    inside = [t for t in targets if t != here and here in t.parents]
    if not inside and not root:
        return [] if shown else ["--ro-bind", str(directory), str(directory)]
    next_parts = {here / t.relative_to(here).parts[0] for t in inside}
    if root:  # the host's /proc, /dev and /tmp are replaced by private ones, whatever is bound
        next_parts -= {PurePosixPath(p) for p in _SPECIAL}
    if all(_real_directory(Path(part)) and part not in targets for part in next_parts):
        args = [] if shown else ["--ro-bind", str(directory), str(directory)]
        for part in sorted(next_parts):
            args += _carve(Path(part), targets, shown=True)
        return args + (_specials() if root else [])
    args: list[str] = [] if root else ["--tmpfs", str(directory)]
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        path = str(entry)
        if path in _SPECIAL and root:
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
    return args + (_specials() if root else [])


def _masks(hidden: list[Path], targets: list[PurePosixPath]) -> list[str]:
    """An empty tmpfs over each hidden host path, unless the sandbox cannot see it anyway: it lies
    under a mount target or a private /tmp, /proc or /dev (a data directory under /tmp, as tests
    and benchmarks make, would otherwise cost a mount point created in the container's /tmp)."""
    covering = [*targets, *(PurePosixPath(p) for p in _SPECIAL)]
    args: list[str] = []
    for path in hidden:
        real = PurePosixPath(os.path.realpath(path))  # what a link leads to is what must be masked
        if any(real == top or top in real.parents for top in covering):
            continue
        if os.path.exists(real):
            args += ["--tmpfs", str(real)]
    return args


def _specials() -> list[str]:
    return [arg for special in _SPECIAL.values() for arg in special]


def _real_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _check_command(spec: ProcessSpec) -> None:
    """Fail before starting when the executable cannot be found or run (SPEC §7 step 5)."""
    program = spec.command[0] if spec.command else ""
    hint = NOT_STARTED
    if not program:
        raise CommandNotStarted("the command is empty")
    candidates = [program] if "/" in program else [
        posixpath.join(d, program) for d in spec.environment.get("PATH", os.defpath).split(":") if d
    ]
    if "/" in program and not program.startswith("/"):
        candidates = [posixpath.join(spec.cwd, program)]
    binds = _deepest_first(spec.binds)
    for candidate in candidates:
        host = _host_path(candidate, binds)
        if host is not None and os.path.isfile(host) and os.access(host, os.X_OK):
            return
    raise CommandNotStarted(hint.format(program))


def _deepest_first(binds: list[Bind]) -> list[tuple[str, str]]:
    """(target, source) of each bind, the deepest target first (it wins where binds nest)."""
    pairs = [(posixpath.normpath(b.target), str(b.source)) for b in binds]
    return sorted(pairs, key=lambda pair: 0 if pair[0] == "/" else pair[0].count("/"), reverse=True)


def _host_path(path: str, binds: list[tuple[str, str]]) -> str | None:
    """Where a path inside the container lives on the host; `binds` from `_deepest_first`.
    (Checked for every PATH entry before each start: plain strings, no Path objects.)"""
    inner = posixpath.normpath(path)
    for target, source in binds:
        if inner == target:
            return source
        if inner.startswith(target + "/") or target == "/":
            return posixpath.join(source, inner[len(target):].lstrip("/"))
    if inner == "/tmp" or inner.startswith("/tmp/"):
        return None  # the private /tmp starts empty
    return inner


def _address_space_limit(spec: ProcessSpec, groups: list[Path]):  # type: ignore[no-untyped-def]
    """Without a memory cgroup, an address-space rlimit set in the child is the fallback
    (generous: address space is not resident memory)."""
    if not spec.ram or any(g.parent.parent.name == "memory" for g in groups):
        return None
    limit = max(spec.ram * 4, 1 << 30)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply
