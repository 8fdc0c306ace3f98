"""A Slurm that only records what it is asked, for tests: jobs stay where the test puts them."""

from __future__ import annotations

from dataclasses import replace

from ..backends import BackendUnavailable, Unsatisfiable
from .base import PENDING, Job


class RecordingSlurm:
    def __init__(self, first_job_id: int = 1000) -> None:
        self.jobs: dict[int, Job] = {}
        self.scripts: dict[int, str] = {}
        self.arguments: dict[int, list[str]] = {}
        self.calls: list[tuple[str, ...]] = []  # ("sbatch", name), ("squeue",), ("scancel", id), ("renice", id, nice)
        self.reject_with: str | None = None  # the next submissions are refused for good with this reason
        self.down = False  # every command fails as if the controller did not answer
        self.sbatch_down = False  # only submissions fail so
        self._next_id = first_job_id

    def submit(self, arguments: list[str], script: str) -> int:
        options = dict(a.removeprefix("--").split("=", 1) for a in arguments if a.startswith("--") and "=" in a)
        self.calls.append(("sbatch", options.get("job-name", "")))
        self._answer()
        if self.sbatch_down:
            raise BackendUnavailable("sbatch: error: Batch job submission failed: Socket timed out (as the test asked)")
        if self.reject_with is not None:
            raise Unsatisfiable(f"slurm rejected the job: {self.reject_with}")
        job_id = self._next_id
        self._next_id += 1
        self.jobs[job_id] = Job(job_id, options.get("job-name", ""), PENDING, "None", int(options.get("nice", 0)),
                                options.get("comment", ""))
        self.scripts[job_id] = script
        self.arguments[job_id] = arguments
        return job_id

    def queue(self) -> list[Job]:
        self.calls.append(("squeue",))
        self._answer()
        return list(self.jobs.values())

    def cancel(self, job_id: int) -> None:
        self.calls.append(("scancel", str(job_id)))
        self._answer()
        self.jobs.pop(job_id, None)

    def renice(self, job_id: int, nice: int) -> None:
        self.calls.append(("renice", str(job_id), str(nice)))
        self._answer()
        if job_id in self.jobs:
            self.jobs[job_id] = replace(self.jobs[job_id], nice=nice)

    # -- what the test makes Slurm do ------------------------------------------------------

    def job_named(self, name: str) -> Job:
        return next(job for job in self.jobs.values() if job.name == name)

    def set_state(self, name: str, state: str, reason: str = "None") -> None:
        job = self.job_named(name)
        self.jobs[job.job_id] = replace(job, state=state, reason=reason)

    def vanish(self, name: str) -> None:
        del self.jobs[self.job_named(name).job_id]

    def count(self, command: str) -> int:
        return sum(1 for call in self.calls if call[0] == command)

    def _answer(self) -> None:
        if self.down:
            raise BackendUnavailable("slurm is down (as the test asked)")
