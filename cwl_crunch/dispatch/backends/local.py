"""The local backend: crunch-run processes on this host, one container each at a time, adoptable
after a restart.

crunch-run runs in workers forked from a copy of the dispatcher, which has already imported it
(see workers.py): starting a Python interpreter and importing crunch-run costs about 0.1 s of
CPU, and even a fresh fork costs more than running a short container does. A worker runs exactly
what `crunchctl run-container` runs, after locking the container for the dispatcher: that lock
is its first request, so the dispatcher starts the next container while the API answers (a
crunch-run that finds the container taken by another dispatcher ends, changing nothing). Each
container handed over has a pid file in the state directory holding its worker's pid and start
time, so a restarted dispatcher adopts the live ones and is not fooled by a recycled pid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...processes import process_start
from ...runner import crunch_run
from . import Capacity, Tracking
from .workers import Pool


class LocalBackend:
    name = "local"
    queue_activity = None  # nothing waits here: the dispatcher only starts what fits
    locks_itself = True  # the lock is crunch-run's first request (the dispatcher goes on)

    def __init__(self, capacity: Capacity, state_dir: Path, environment: dict[str, str],
                 options: crunch_run.Options) -> None:
        self.capacity = capacity
        self.state_dir = state_dir
        self.environment = environment  # CRUNCH_API, CRUNCH_DISPATCH_TOKEN, ...
        self.options = options
        self.pool: Pool | None = None  # from bind()
        self.dispatcher_uuid = ""  # set by bind()
        state_dir.mkdir(parents=True, exist_ok=True)

    def bind(self, dispatcher_uuid: str) -> None:
        """The pid files in the state directory are this dispatcher's own: nothing to mark. The
        uuid is what crunch-run locks containers for. The workers' pool starts here, before the
        dispatcher starts any other thread: its forker is a copy of this process as it is now."""
        self.dispatcher_uuid = dispatcher_uuid
        if self.pool is not None:
            self.pool.close()
        self.pool = Pool(self._run, lambda uuid: self.state_dir / f"{uuid}.log")

    def start(self, container: dict[str, Any]) -> None:
        """Hand a Queued container to a crunch-run worker, which locks it for this dispatcher."""
        if self.pool is None:
            raise RuntimeError("the local backend starts containers once bound to its dispatcher")
        uuid = container["uuid"]
        worker = self.pool.hand(uuid)
        (self.state_dir / f"{uuid}.pid").write_text(f"{worker.pid} {worker.started}")

    def _run(self, uuid: str) -> int:
        """In a worker: crunch-run for one container."""
        os.environ.update(self.environment)
        return crunch_run.main(uuid, self.options, lock_for=self.dispatcher_uuid)

    def alive(self) -> set[str]:
        self._reap()
        live = set()
        for pid_file in self.state_dir.glob("*.pid"):
            if _is_alive(pid_file):
                live.add(pid_file.stem)
            else:
                pid_file.unlink(missing_ok=True)
        # One that finished while we looked (its worker reported, or died) is not counted.
        return live - self._reap()

    def track(self, mine: list[dict[str, Any]], now: float) -> Tracking:
        """Nothing to do: crunch-run notices a cancel itself, and starts as soon as it is handed over."""
        return Tracking()

    def _reap(self) -> set[str]:
        """Take in the containers the workers have finished (and forget workers that ended).
        The log of one that saved everything (crunch-run exited 0 and
        removed its work directory) goes: what it says is in the container's log collection
        (crunch-run.txt). Any other stays, to look at. Returns the containers finished."""
        finished: set[str] = set()
        for uuid, code in self.pool.collect() if self.pool is not None else ():
            finished.add(uuid)
            if code is None:
                continue  # its worker died: the pid file names a dead process (see alive)
            (self.state_dir / f"{uuid}.pid").unlink(missing_ok=True)
            if code == 0 and not (self.options.work_root / uuid).exists():
                (self.state_dir / f"{uuid}.log").unlink(missing_ok=True)
        return finished


def _is_alive(pid_file: Path) -> bool:
    """Whether the process named in `pid_file` still runs (same pid *and* start time, not a zombie)."""
    try:
        pid_text, started = pid_file.read_text().split()
        return process_start(int(pid_text)) == started
    except (OSError, ValueError):
        return False
