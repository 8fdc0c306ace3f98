"""The local backend: one crunch-run process per container on this host, adoptable after a restart.

crunch-run is forked from the dispatcher, which has already imported it: starting a Python
interpreter and importing crunch-run costs about 0.1 s of CPU, more than running a short
container does, and it would be paid by every container. The child starts a session of its own
(the dispatcher dying does not take it along) and runs exactly what `crunchctl run-container`
runs, after locking the container for the dispatcher: that lock is its first request, so the
dispatcher starts the next container while the API answers (a crunch-run that finds the
container taken by another dispatcher exits, changing nothing). Each has a pid file holding its
pid and start time in the state directory, so a restarted dispatcher adopts the live ones and is
not fooled by a recycled pid.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ...runner import crunch_run
from . import Capacity, Tracking


class LocalBackend:
    name = "local"
    queue_activity = None  # nothing waits here: the dispatcher only starts what fits
    locks_itself = True  # the lock is the forked crunch-run's first request (the dispatcher goes on)

    def __init__(self, capacity: Capacity, state_dir: Path, environment: dict[str, str],
                 options: crunch_run.Options) -> None:
        self.capacity = capacity
        self.state_dir = state_dir
        self.environment = environment  # CRUNCH_API, CRUNCH_DISPATCH_TOKEN, ...
        self.options = options
        self.children: dict[str, int] = {}  # uuid → pid, for the ones this process forked
        self.dispatcher_uuid = ""  # set by bind()
        state_dir.mkdir(parents=True, exist_ok=True)

    def bind(self, dispatcher_uuid: str) -> None:
        """The pid files in the state directory are this dispatcher's own: nothing to mark. The
        uuid is what crunch-run locks containers for."""
        self.dispatcher_uuid = dispatcher_uuid

    def start(self, container: dict[str, Any]) -> None:
        """Fork crunch-run for a Queued container, which locks it for this dispatcher itself."""
        uuid = container["uuid"]
        log_path = self.state_dir / f"{uuid}.log"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: become crunch-run for this container, never return
            code = 1
            try:
                os.setsid()
                _redirect(log_path)
                os.environ.update(self.environment)
                code = crunch_run.main(uuid, self.options, lock_for=self.dispatcher_uuid)
            except BaseException as error:  # noqa: BLE001 - the child must exit, whatever happened
                print(f"crunch-run {uuid}: {error!r}", file=sys.stderr)
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.children[uuid] = pid
        (self.state_dir / f"{uuid}.pid").write_text(f"{pid} {_start_time(pid)}")

    def alive(self) -> set[str]:
        self._reap()
        live = set()
        for pid_file in self.state_dir.glob("*.pid"):
            if _is_alive(pid_file):
                live.add(pid_file.stem)
            else:
                pid_file.unlink(missing_ok=True)
        # A child of ours that ended since the first look is a zombie now: collected here (not
        # forgotten unreaped), its log going as usual.
        self._reap()
        return live

    def track(self, mine: list[dict[str, Any]], now: float) -> Tracking:
        """Nothing to do: crunch-run notices a cancel itself, and starts as soon as it is forked."""
        return Tracking()

    def _reap(self) -> None:
        """Collect the exit status of finished children, so none stays a zombie. The log of one
        that saved everything (it exited 0 and removed its work directory) goes too: what it says
        is in the container's log collection (crunch-run.txt). Any other stays, to look at."""
        for uuid, pid in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, -1
            if not done:
                continue
            self.children.pop(uuid)
            if status == 0 and not (self.options.work_root / uuid).exists():
                (self.state_dir / f"{uuid}.log").unlink(missing_ok=True)


def _redirect(log_path: Path) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _is_alive(pid_file: Path) -> bool:
    """Whether the process named in `pid_file` still runs (same pid *and* start time, not a zombie)."""
    try:
        pid_text, started = pid_file.read_text().split()
        stat = Path(f"/proc/{int(pid_text)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return False
    return stat[0] != "Z" and stat[19] == started
