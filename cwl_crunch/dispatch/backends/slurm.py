"""The Slurm backend: every locked container becomes a batch job running `crunchctl run-container`.

Slurm decides what runs when, so the dispatcher hands it everything queued (its capacity has no
vCPU or RAM bound), except that it still caps how many workflow runners run at once.
Jobs are named after their container and carry the dispatcher's uuid as their comment: one
`squeue` per reconciliation finds them all, which is also how a restarted dispatcher adopts them.
"""

from __future__ import annotations

import logging
from typing import Any

from ..slurm.base import PENDING, Job, Slurm
from ..slurm.batch import (
    IMPOSSIBLE_REASONS,
    nice_for,
    render_batch_script,
    sbatch_arguments,
    waiting_status,
)
from . import Capacity, Tracking

log = logging.getLogger(__name__)
# crunch-run stops a container it was told to cancel by itself (within a second or so) and saves
# its logs; scancel'ing its job at once would cut that short and make it look like a lost node.
# scancel is the backstop for a job still there this long after nobody wants it.
STOP_GRACE_SECONDS = 30.0


class SlurmBackend:
    name = "slurm"
    queue_activity = "in slurm queue"
    locks_itself = False

    def __init__(self, slurm: Slurm, crunch_run: list[str], sbatch_extra: tuple[str, ...] = (),
                 supervisors: int = 4) -> None:
        """`crunch_run`: the command that runs one container on a node, without the uuid."""
        # Runners mostly wait for their children: left uncapped, they could fill every slot of a
        # small cluster and starve the children they wait for.
        self.capacity = Capacity(vcpus=None, ram=None, supervisors=supervisors)
        self.slurm = slurm
        self.crunch_run = crunch_run
        self.sbatch_extra = sbatch_extra
        self.owner = ""  # the comment marking our jobs: set by bind()
        self.jobs: dict[str, Job] = {}  # container uuid → its job, as of the last squeue and our submissions since
        self._unwanted_since: dict[int, float] = {}

    def bind(self, dispatcher_uuid: str) -> None:
        self.owner = f"cwl-crunch dispatcher {dispatcher_uuid}"

    def start(self, container: dict[str, Any]) -> None:
        uuid = container["uuid"]
        stale = self.jobs.pop(uuid, None)
        if stale is not None:  # from an earlier lock of the same container (held and released meanwhile)
            self.slurm.cancel(stale.job_id)
        arguments = sbatch_arguments(container, self.owner, self.sbatch_extra)
        job_id = self.slurm.submit(arguments, render_batch_script(uuid, self.crunch_run))
        log.info("%s: submitted as slurm job %s", uuid, job_id)
        self.jobs[uuid] = Job(job_id, uuid, PENDING, "None", nice_for(int(container.get("priority") or 0)), self.owner)

    def alive(self) -> set[str]:
        ours = [job for job in self.slurm.queue() if job.comment == self.owner]
        self.jobs = {}
        for job in sorted(ours, key=lambda j: j.job_id):  # the newest of two jobs for one container wins
            older = self.jobs.get(job.name)
            if older is not None:
                self.slurm.cancel(older.job_id)
            self.jobs[job.name] = job
        return set(self.jobs)

    def track(self, mine: list[dict[str, Any]], now: float) -> Tracking:
        tracking = Tracking()
        wanted = {c["uuid"]: c for c in mine if int(c.get("priority") or 0) > 0}
        for uuid, job in list(self.jobs.items()):
            container = wanted.get(uuid)
            if container is None:  # finished, cancelled, unlocked (held) or taken over
                if job.pending or now - self._unwanted_since.setdefault(job.job_id, now) >= STOP_GRACE_SECONDS:
                    self._cancel(uuid, job)
                continue
            self._unwanted_since.pop(job.job_id, None)
            if not job.pending:
                continue
            if job.reason in IMPOSSIBLE_REASONS:
                self._cancel(uuid, job)
                tracking.impossible[uuid] = f"slurm cannot run job {job.job_id}: {job.reason}"
                continue
            nice = nice_for(int(container["priority"]))
            if nice != job.nice:
                self.slurm.renice(job.job_id, nice)
            if container.get("state") == "Locked":
                tracking.waiting[uuid] = waiting_status(job)
        live = {job.job_id for job in self.jobs.values()}
        self._unwanted_since = {k: v for k, v in self._unwanted_since.items() if k in live}
        return tracking

    def _cancel(self, uuid: str, job: Job) -> None:
        log.info("%s: scancel slurm job %s (%s)", uuid, job.job_id, job.state.lower())
        self.slurm.cancel(job.job_id)
        del self.jobs[uuid]
