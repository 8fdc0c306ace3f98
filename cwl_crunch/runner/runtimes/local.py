"""The local runtime: the host's filesystem, read-only, in a private mount namespace (bubblewrap).

The process is started held (`--block-fd`): bubblewrap builds the sandbox, then waits for a byte
before running the command. Three things happen side by side: bubblewrap's setup, the sandbox's
move into its cgroups (a thread here; the first cgroup move after a quiet spell takes about 10 ms
on the hosts measured), and crunch-run recording Running. The command starts once all are done.

The container's mounts appear at their targets even where the host has no such directory
(`/keep/in`, `/var/spool/cwl`): the host root is not bound as one piece but "carved" — a
directory lacking room for a target becomes a fresh tmpfs holding read-only binds of the host's
entries beside it, so a target can be created at any depth without touching the host.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path, PurePosixPath

from . import NOT_STARTED, Bind, CommandNotStarted, ProcessSpec, RuntimeUnavailable

# The host's pseudo-filesystems are replaced by private ones.
_SPECIAL = {"/proc": ["--proc", "/proc"], "/dev": ["--dev", "/dev"], "/tmp": ["--tmpfs", "/tmp"]}


class LocalRuntime:
    name = "local"
    holds_start = True

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self._gates: dict[int, int] = {}  # pid of a held process → the pipe end that releases it
        self._joins: dict[int, _Join] = {}  # pid of a held process → its sandbox joining its cgroups
        self._join_error: str | None = None

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

    def start(self, spec: ProcessSpec, held: bool = False) -> subprocess.Popen[bytes]:
        _check_command(spec)
        groups = _cgroups(spec)
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
                [*([] if joins_later else _joining(groups)), *arguments, "--", *spec.command],
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
            self._joins[process.pid] = _Join(info_in, groups)
        return process

    def release(self, process: subprocess.Popen[bytes]) -> None:
        """Let the command start, once the sandbox is in its cgroups; if it could not join them,
        kill it unrun instead (`start_failure` then says why)."""
        join = self._joins.pop(process.pid, None)
        if join is not None and join.wait() is not None:
            self._join_error = join.error
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
                returncode == JOIN_FAILED and stderr_head.startswith(JOIN_FAILED_MESSAGE)):
            return stderr_head.decode(errors="replace").splitlines()[0]
        return None

    def cleanup(self, spec: ProcessSpec) -> None:
        """Nothing outlives bwrap (`--die-with-parent`, own pid namespace); its cgroups go once
        the kernel has let go of the last exiting process (a few milliseconds)."""
        memory, cpu = _cgroup_paths(spec)
        for group in (memory, cpu):
            delay = 0.001
            while delay < 1.0:  # about 1 s in all; a group left behind is swept by a later start
                try:
                    if group is memory:
                        _release_page_cache(group)
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(delay)
                    delay *= 2


def _carve(directory: Path, targets: list[PurePosixPath]) -> list[str]:
    """bwrap arguments showing `directory` read-only, with room made for `targets` below it.

    A directory is carved (a tmpfs holding binds of its entries) only where a target needs a
    place the host lacks. One whose targets all lie deeper, below host directories, is bound whole
    and those are carved instead: `/var/spool/cwl` costs a bind of `/var` and a carved
    `/var/spool`, not also one bind per entry of `/var` (each mount costs bubblewrap a fraction of
    a millisecond, for every container).
    """
    inside = [t for t in targets if t != PurePosixPath(directory) and PurePosixPath(directory) in t.parents]
    if directory != Path("/") and not inside:
        return ["--ro-bind", str(directory), str(directory)]
    next_parts = {PurePosixPath(directory) / t.relative_to(directory).parts[0] for t in inside}
    if directory != Path("/") and all(_real_directory(Path(part)) and part not in targets for part in next_parts):
        args = ["--ro-bind", str(directory), str(directory)]
        for part in sorted(next_parts):
            args += _carve(Path(part), targets)
        return args
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


def _real_directory(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


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


CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


def _cgroup_paths(spec: ProcessSpec) -> list[Path]:
    name = spec.name or "unnamed"
    return [CGROUP_ROOT / controller / "crunch" / name for controller in ("memory", "cpu")]


def _cgroups(spec: ProcessSpec) -> list[Path]:
    """cgroup v1 groups limiting memory (`ram`) and CPU (`vcpus`), where the host lets us make them.

    Returns the groups the process must join (none: not root, cgroup v2 only, or no limits asked).
    """
    wanted = []
    memory, cpu = _cgroup_paths(spec)
    if spec.ram and (memory.parent.parent / "memory.limit_in_bytes").exists():
        wanted.append((memory, {"memory.limit_in_bytes": spec.ram, "memory.memsw.limit_in_bytes": spec.ram}))
    if spec.vcpus and (cpu.parent.parent / "cpu.cfs_quota_us").exists():
        wanted.append((cpu, {"cpu.cfs_period_us": CPU_PERIOD_US, "cpu.cfs_quota_us": int(spec.vcpus * CPU_PERIOD_US)}))
    _sweep_stale_cgroups([group.parent for group, _ in wanted])
    groups = []
    for group, settings in wanted:
        try:
            group.mkdir(parents=True, exist_ok=True)
            for name, value in settings.items():
                if (group / name).exists():  # memsw only exists with swap accounting
                    (group / name).write_text(str(value))
        except OSError:
            continue  # not allowed here: the rlimit below still applies
        groups.append(group)
    return groups


STALE_CGROUP_SECONDS = 60.0
RELEASED_CACHE_MAX = 64 << 20  # page cache a finished container's memory cgroup has reclaimed at once


def _release_page_cache(group: Path) -> None:
    """Reclaim the page cache still charged to a finished container's memory cgroup (files it was
    the first to read, such as its inputs), if there is little. Otherwise the removed group lingers,
    dying, until memory pressure frees that cache, and many of them slow the host: 1,400 made a
    500-step scatter 20% slower. A large cache (a big input other steps share) is left alone:
    evicting it would make them read it from disk again."""
    try:
        if int((group / "memory.usage_in_bytes").read_text()) <= RELEASED_CACHE_MAX:
            (group / "memory.force_empty").write_text("0")
    except (OSError, ValueError):
        pass  # gone already, or still in use (the caller retries)


def _sweep_stale_cgroups(parents: list[Path]) -> None:
    """Remove groups a killed crunch-run left behind. rmdir refuses a group that still has
    processes, and a group younger than a minute may be another crunch-run's, still starting."""
    now = time.time()
    for parent in parents:
        try:
            groups = [g for g in parent.iterdir() if g.is_dir() and now - g.stat().st_mtime > STALE_CGROUP_SECONDS]
        except OSError:
            continue
        for group in groups:
            try:
                group.rmdir()
            except OSError:
                pass


def group_members(spec: ProcessSpec) -> list[int] | None:
    """The pids in the container's memory cgroup, if it has one."""
    try:
        return [int(line) for line in (_cgroup_paths(spec)[0] / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return None


def memory_usage(spec: ProcessSpec) -> tuple[int, int] | None:
    """(bytes in use, limit) of the container's memory cgroup, if it has one."""
    group = _cgroup_paths(spec)[0]
    try:
        return int((group / "memory.usage_in_bytes").read_text()), int((group / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return None


class _Join(threading.Thread):
    """Moves a held bubblewrap's sandbox into its cgroups while bubblewrap builds it.

    The first cgroup move after a quiet spell takes about 10 ms here (the kernel waits out an RCU
    grace period to make the cgroup lock exclusive), and the sandbox's setup takes about as long:
    side by side rather than one after the other, they are off a short step's critical path. The
    sandbox's first process (bubblewrap's child, named on --info-fd) is moved before the gate
    opens, so the command, which it forks only then, starts inside the groups.
    """

    def __init__(self, info: int, groups: list[Path]) -> None:
        super().__init__(name="cgroup-join", daemon=True)
        self.info, self.groups = info, groups
        self.error: str | None = None
        self.start()

    def run(self) -> None:
        try:
            pid = _child_pid(self.info)
        finally:
            os.close(self.info)
        if pid is None:
            return  # bubblewrap failed before making the sandbox: its own error says why
        for group in self.groups:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except OSError as error:
                self.error = f"{JOIN_FAILED_MESSAGE.decode()} {group}: {error.strerror or error}"
                return

    def wait(self) -> str | None:
        """The error, once done (None: joined, or nothing to join)."""
        self.join()
        return self.error


def _child_pid(info: int) -> int | None:
    """The sandbox's pid, from bubblewrap's --info-fd JSON; None if it ended without one."""
    data = b""
    while chunk := os.read(info, 4096):
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue  # not all of it yet
        except (KeyError, TypeError):
            return None
    return None


# Not held, the cgroups are joined by a shell that then becomes bubblewrap, rather than in a `preexec_fn`:
# Python then starts the child with vfork instead of copying crunch-run's memory, and returns
# as soon as the shell runs, while the slow join goes on beside crunch-run's own work.
JOIN_FAILED = 125
JOIN_FAILED_MESSAGE = b"crunch-run: cannot join cgroup"
_JOIN_SCRIPT = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do '
    f'echo $$ 2>/dev/null > "$1/cgroup.procs" || {{ echo "{JOIN_FAILED_MESSAGE.decode()} $1" >&2; exit {JOIN_FAILED}; }}; '
    'shift; n=$((n - 1)); done; exec "$@"'
)


def _joining(groups: list[Path]) -> list[str]:
    """The command prefix that moves the process into `groups` before it execs the rest."""
    if not groups:
        return []
    return ["/bin/sh", "-c", _JOIN_SCRIPT, "crunch-join", str(len(groups)), *(str(g) for g in groups)]


def _address_space_limit(spec: ProcessSpec, groups: list[Path]):  # type: ignore[no-untyped-def]
    """Without a memory cgroup, an address-space rlimit set in the child is the fallback
    (generous: address space is not resident memory)."""
    if not spec.ram or any(g.parent.parent.name == "memory" for g in groups):
        return None
    limit = max(spec.ram * 4, 1 << 30)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply
