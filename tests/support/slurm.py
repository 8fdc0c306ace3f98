"""A throwaway single-node Slurm cluster for tests: munged, slurmctld and slurmd started by the test
itself, on loopback, on ports picked free at start, with every file in one fresh state directory.

Why not the machine's Slurm: the test machines have no systemd and no configured cluster, and a
test must not depend on (or disturb) one that might exist. So each cluster gets its own munge key
and munged socket, its own slurm.conf (rendered from tests/data/slurm/slurm.conf.in), its own
state, spool and log files, and `stop()` kills the daemons and every job process they started.

Client processes (sbatch, squeue, scancel, scontrol, sinfo, and anything that runs them, such as a
dispatcher under test) find the cluster through `ThrowawaySlurm.env`, which they merge into their
environment. Tests get a started cluster from the session fixture `slurm`; register this module
with `pytest_plugins = ["tests.support.slurm"]`.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent / "data" / "slurm" / "slurm.conf.in"
NODE = "localhost"  # slurmd runs as `-N localhost`: the machine's hostname is not in slurm.conf
PARTITIONS = ("debug", "other")  # "debug" is the default partition
MARKER = "CRUNCH_TEST_SLURM_CLUSTER"  # env var naming the cluster in its daemons and clients

_DAEMONS = ("munged", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
# Daemons live in sbin, which is not on every user's PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# A Unix socket path holds at most 107 bytes. slurmstepd puts sockets named like
# "localhost_1234.4294967291" in the spool directory, so sockets go to a short directory of
# their own when the state directory's path is longer than this.
_MAX_RUN_DIR_CHARS = 60
_LOG_TAIL_LINES = 25
# Job states in which a job has not ended yet (squeue %T).
_UNFINISHED = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"}
)


def _find(name: str) -> str | None:
    """The path of program `name`: PATH first, then the sbin directories."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))


def slurm_unavailable() -> str | None:
    """None when a throwaway Slurm cluster can be started here, else a one-line reason why not."""
    missing = [name for name in (*_DAEMONS, *_CLIENTS) if _find(name) is None]
    if missing:
        return (
            f"Slurm/munge programs not installed: {', '.join(missing)} "
            "(.ci/install-deps installs slurmctld, slurmd, slurm-client and munge)"
        )
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster runs slurmd as root (it starts jobs as their submitter)"
    if not TEMPLATE.is_file():
        return f"the Slurm configuration template {TEMPLATE} is missing"
    return None


def _host_memory_mib() -> int:
    """This machine's total memory in MiB, from /proc/meminfo."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago (all held at once)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, headed by its name (or a note that it is missing)."""
    if not path.exists():
        return f"--- {path.name}: (missing) ---"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join([f"--- {path.name} (last {len(text)} lines) ---", *text])


class _Process:
    """One row of the process table: enough to find a cluster's job processes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        stat = Path(f"/proc/{pid}/stat").read_text()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        self.ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        self.comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        self.state = stat[stat.rindex(")") + 2 :].split()[0]  # "Z": a zombie, already dead
        self._environ: dict[str, str] | None = None

    @property
    def environ(self) -> dict[str, str]:
        """The process's initial environment (empty if it is gone or unreadable)."""
        if self._environ is None:
            self._environ = {}
            with contextlib.suppress(OSError):
                for item in Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0"):
                    key, sep, value = item.partition(b"=")
                    if sep:
                        self._environ[key.decode(errors="replace")] = value.decode(errors="replace")
        return self._environ


def _process_table() -> dict[int, _Process]:
    """Every live process, by pid (zombies and processes that exit while being read are left out)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError):
                process = _Process(int(entry))
                if process.state != "Z":
                    table[process.pid] = process
    return table


class ThrowawaySlurm:
    """One single-node Slurm cluster (node `localhost`, partitions `debug` (default) and `other`).

    The node declares `cpus` CPUs (more than the machine has, so several tiny jobs run at once)
    and `real_memory_mib` MiB (this machine's memory less a little), so a job asking for more of
    either is rejected by sbatch. Nothing outside `state_dir` (and, for long state paths, one short
    directory for sockets under the system temp directory) is written.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        cpus: int = 8,
        min_job_age: int = 2,
        kill_wait: int = 1,
        start_timeout: float = 30.0,
    ) -> None:
        """`state_dir`: a fresh directory to keep everything in (kept after stop(), for its logs);
        None makes a temporary one that stop() removes."""
        self.cpus = cpus
        total = _host_memory_mib()
        # A little less than the machine has, as a real node reserves some for the OS.
        self.real_memory_mib = total - min(1024, total // 10)
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.start_timeout = start_timeout
        self._given_state_dir = state_dir
        self.state_dir: Path | None = None
        self._run_dir: Path | None = None
        self._removable: list[Path] = []  # directories this object created and stop() removes
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}
        self._token = secrets.token_hex(8)
        self.slurmctld_port = 0
        self.slurmd_port = 0
        self.env: dict[str, str] = {}

    # ---- paths ----------------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        """The rendered slurm.conf (what `SLURM_CONF` points at)."""
        assert self.state_dir is not None, "ThrowawaySlurm not started"
        return self.state_dir / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        assert self._run_dir is not None, "ThrowawaySlurm not started"
        return self._run_dir / "munge" / "munge.socket.2"

    def logs(self) -> str:
        """The tails of the daemons' logs (for error messages and failing tests)."""
        if self.state_dir is None:
            return "(not started)"
        # munged in the foreground logs to its stderr; slurmctld and slurmd to their LogFiles.
        names = ["munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"]
        return "\n".join(_tail(self.state_dir / name) for name in names)

    # ---- clients --------------------------------------------------------------------------------

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with this cluster's `env` merged in."""
        return {**(os.environ if base is None else base), **self.env}

    def run(
        self, *command: str, extra_env: dict[str, str] | None = None, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command (e.g. `run("squeue", "--noheader")`) against this cluster, with
        this process's environment plus `env` plus `extra_env`; text output captured."""
        return subprocess.run(
            list(command),
            env={**self.client_env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def jobs(self) -> list[str]:
        """The ids of the jobs squeue lists (pending, running or completing)."""
        result = self.run("squeue", "--noheader", "--format=%i", check=True)
        return result.stdout.split()

    def job_state(self, job_id: str | int) -> str | None:
        """The job's state as squeue tells it (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...),
        or None once the controller has forgotten it (MinJobAge seconds and a purge after it ended)."""
        result = self.run("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T")
        if result.returncode != 0 and "Invalid job id" in result.stderr:
            return None
        if result.returncode != 0:
            raise RuntimeError(f"squeue failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip() or None

    def wait_for_job(self, job_id: str | int, timeout: float = 30.0) -> str | None:
        """Wait until the job has ended; its final state (None if already forgotten).

        Polls squeue every 0.1 s: `sbatch --wait` would do, but it polls every 2 s or more.
        """
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job_id)) in _UNFINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout}s")
            time.sleep(0.1)
        return state

    def wait_for_no_jobs(self, timeout: float = 30.0) -> None:
        """Wait until squeue lists no jobs (all finished); raise if they are still there."""
        deadline = time.monotonic() + timeout
        while self.jobs():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still queued after {timeout}s: {self.run('squeue').stdout}")
            time.sleep(0.1)

    # ---- start ----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start munged, slurmctld and slurmd, wait until the node is idle and a probe job has run
        (about 3 s in all); returns self.

        Raises RuntimeError with the daemons' log tails if they are not ready within
        `start_timeout` seconds (the cluster is stopped first).
        """
        if self.state_dir is not None:
            return self
        reason = slurm_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        atexit.register(self.stop)
        try:
            self._prepare()
            self._start_daemons()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        """Make the state directory, the munge key and slurm.conf; set `env`."""
        if self._given_state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="slurm-"))
            self._removable.append(self.state_dir)
        else:
            self.state_dir = Path(self._given_state_dir).resolve()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            if any(self.state_dir.iterdir()):
                raise RuntimeError(f"Slurm state directory {self.state_dir} is not empty")
        if len(str(self.state_dir)) <= _MAX_RUN_DIR_CHARS:
            self._run_dir = self.state_dir
        else:
            self._run_dir = Path(tempfile.mkdtemp(prefix="slurm-run-"))
            self._removable.append(self._run_dir)

        # munged refuses a socket directory that others may write to, and clients must be able to
        # reach the socket: 0755 (mkdir's mode is cut by the umask, hence the chmod).
        self.munge_socket.parent.mkdir(mode=0o755)
        self.munge_socket.parent.chmod(0o755)
        (self._run_dir / "slurmd").mkdir(mode=0o755)
        (self.state_dir / "slurmctld").mkdir(mode=0o700)
        # A fresh key per cluster: 0400 and owned by the munged user, or munged refuses it.
        key = self.state_dir / "munge.key"
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(os.urandom(1024))
        (self.state_dir / "plugstack.conf").write_text("")

        self.slurmctld_port, self.slurmd_port = _free_ports(2)
        values = {
            "cluster_name": f"test{self._token[:6]}",
            "slurmctld_port": self.slurmctld_port,
            "slurmd_port": self.slurmd_port,
            "user": getpass.getuser(),
            "munge_socket": self.munge_socket,
            "state_dir": self.state_dir,
            "run_dir": self._run_dir,
            "cpus": self.cpus,
            "real_memory_mib": self.real_memory_mib,
            # A job that does not say --mem gets an even share, so `cpus` such jobs fit at once.
            "def_mem_per_cpu": self.real_memory_mib // self.cpus,
            "min_job_age": self.min_job_age,
            "kill_wait": self.kill_wait,
        }
        template = string.Template(TEMPLATE.read_text())
        self.conf_path.write_text(template.substitute({name: str(value) for name, value in values.items()}))
        self.env = {"SLURM_CONF": str(self.conf_path), MARKER: self._token}

    def _spawn(self, name: str, *args: str) -> None:
        """Start daemon `name` in the foreground of a child process (so its pid is ours to kill)."""
        assert self.state_dir is not None
        program = _find(name)
        assert program is not None
        with open(self.state_dir / f"{name}.out", "wb") as output:
            self._daemons[name] = subprocess.Popen(
                [program, *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.client_env(),  # the marker lets stop() recognise slurmstepd, a slurmd child
                cwd=self.state_dir,
                start_new_session=True,  # a Ctrl-C at the terminal is for pytest, not the daemons
            )

    def _start_daemons(self) -> None:
        assert self.state_dir is not None
        deadline = time.monotonic() + self.start_timeout
        state = self.state_dir
        self._spawn(
            "munged",
            "--foreground",
            # munged wants every directory above its socket open to all ("Socket is inaccessible");
            # a pytest temp directory is 0700. Only root uses this cluster, so that check is moot.
            "--force",
            f"--socket={self.munge_socket}",
            f"--key-file={state / 'munge.key'}",
            f"--pid-file={state / 'munged.pid'}",
            f"--seed-file={state / 'munged.seed'}",
        )
        self._wait(deadline, "munged to create its socket", self.munge_socket.exists)
        conf = str(self.conf_path)
        # slurmctld and slurmd start together: slurmd retries registering until slurmctld answers.
        self._spawn("slurmctld", "-D", "-f", conf)
        self._spawn("slurmd", "-D", "-N", NODE, "-f", conf)
        self._wait(deadline, f"node {NODE} to be idle", lambda: self._node_idle(deadline))
        self._wait(deadline, "squeue to answer", lambda: self._answers(deadline, "squeue", "--noheader"))
        self._run_probe_job(deadline)

    def _run_probe_job(self, deadline: float) -> None:
        """Run one trivial job to the end before any test does.

        It proves what an idle node does not (munge credentials, slurmstepd, the spool directory),
        so a broken cluster fails here with the logs rather than in a puzzling test; and
        slurmctld's first scheduling pass comes ~3 s after it starts (later ones every second),
        which the probe absorbs instead of the first test's job.
        """
        submitted = self._answers(
            deadline, "sbatch", "--parsable", "--job-name=startup-probe", "--output=/dev/null", "--wrap", "true"
        )
        if submitted is None:
            raise RuntimeError(f"Slurm test cluster: sbatch of the startup probe job failed\n{self.logs()}")
        job_id = submitted.stdout.strip()
        self._wait(deadline, "the startup probe job to end", lambda: self.job_state(job_id) not in _UNFINISHED)
        state = self.job_state(job_id)
        if state not in ("COMPLETED", None):
            raise RuntimeError(f"Slurm test cluster: the startup probe job ended {state}\n{self.logs()}")
        self._wait(deadline, f"node {NODE} to be idle again", lambda: self._node_idle(deadline))

    def _answers(self, deadline: float, *command: str) -> subprocess.CompletedProcess[str] | None:
        """The client command's result if it succeeded before `deadline`, else None.

        A client retries an unreachable controller for about 9 s, so each call gets only the
        time left (at least a second)."""
        try:
            result = self.run(*command, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        return result if result.returncode == 0 else None

    def _node_idle(self, deadline: float) -> bool:
        result = self._answers(deadline, "sinfo", "--noheader", "--Node", f"--nodes={NODE}", "--format=%T")
        return result is not None and result.stdout.split()[:1] == ["idle"]

    def _wait(self, deadline: float, what: str, ready: object) -> None:
        """Poll `ready()` until true; raise with the logs if a daemon died or `deadline` passed."""
        assert callable(ready)
        while True:
            dead = {name: proc.returncode for name, proc in self._daemons.items() if proc.poll() is not None}
            if dead:
                raise RuntimeError(
                    f"Slurm test cluster: daemon(s) exited while waiting for {what}: {dead}\n{self.logs()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Slurm test cluster: timed out after {self.start_timeout}s waiting for {what}\n{self.logs()}"
                )
            time.sleep(0.1)

    # ---- stop -----------------------------------------------------------------------------------

    def processes(self) -> list[int]:
        """Pids of this cluster's daemons and of every process they started, found in /proc.

        slurmd starts each slurmstepd through a double fork, so slurmstepds and their jobs are not
        slurmd's descendants, and a daemon's children outlive it. So a process counts as this
        cluster's when it descends from one of our daemons, or is a Slurm program (slurmstepd,
        slurmscriptd, ...) with our marker in its environment (inherited from the daemons), or is
        a job of ours (SLURM_JOB_ID set and SLURM_CONF ours: slurmstepd sets SLURM_CONF even for
        --export=NONE), or descends from one of those. Never this process or its ancestors: a
        test may have merged `env` into ours.
        """
        table = _process_table()
        protected = set()
        pid = os.getpid()
        while pid in table and pid not in protected:
            protected.add(pid)
            pid = table[pid].ppid
        conf = str(self.conf_path)

        def ours(process: _Process) -> bool:
            environ = process.environ
            if process.comm.startswith("slurm") and environ.get(MARKER) == self._token:
                return True
            return "SLURM_JOB_ID" in environ and environ.get("SLURM_CONF") == conf

        roots = {daemon.pid for daemon in self._daemons.values() if daemon.poll() is None}
        roots |= {process.pid for process in table.values() if process.pid not in protected and ours(process)}
        children: dict[int, list[int]] = {}
        for process in table.values():
            children.setdefault(process.ppid, []).append(process.pid)
        found, stack = set(roots), list(roots)
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return sorted((found & table.keys()) - protected)

    def stop(self) -> None:
        """Kill the daemons and every process they started; idempotent.

        SIGKILL, not a clean shutdown: the state is thrown away, and a slurmctld asked to shut down
        takes seconds. Everything is looked up before the first kill (a killed daemon's children
        are no longer its descendants), the controller and slurmd die first so no job starts
        meanwhile, and the sweep repeats until nothing is left (a slurmstepd may have been forking
        a job while we looked). Raises if something survives.
        """
        if self.state_dir is None:
            return
        atexit.unregister(self.stop)
        doomed = self.processes()
        for name in ("slurmctld", "slurmd"):
            if name in self._daemons:
                with contextlib.suppress(ProcessLookupError):
                    self._daemons[name].kill()
        deadline = time.monotonic() + 10
        while doomed and time.monotonic() < deadline:
            for pid in doomed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            doomed = self.processes()
        for daemon in self._daemons.values():
            with contextlib.suppress(ProcessLookupError):
                daemon.kill()
            daemon.wait()
        self._daemons.clear()
        survivors = self.processes()
        for directory in self._removable:
            shutil.rmtree(directory, ignore_errors=True)
        self._removable.clear()
        self.state_dir = None
        self._run_dir = None
        if survivors:
            raise RuntimeError(f"Slurm test cluster: processes still running after stop(): {survivors}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def require_slurm() -> None:
    """Skip the calling test when Slurm is missing here, or fail it under CI=true, where it must run."""
    reason = slurm_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Slurm tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawaySlurm]:
    """One throwaway Slurm cluster for the session (skipped where Slurm is missing; CI requires it)."""
    require_slurm()
    cluster = ThrowawaySlurm(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


__all__ = [
    "MARKER",
    "NODE",
    "PARTITIONS",
    "ThrowawaySlurm",
    "require_slurm",
    "slurm",
    "slurm_unavailable",
]
