"""The four Slurm commands a dispatcher needs, as an interface, and a job as squeue shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PENDING = "PENDING"


@dataclass(frozen=True)
class Job:
    job_id: int
    name: str  # the container uuid
    state: str  # PENDING, RUNNING, COMPLETING, ... as squeue spells it
    reason: str  # why it is pending ("Resources", "Priority", "None", ...)
    nice: int
    comment: str  # which dispatcher submitted it

    @property
    def pending(self) -> bool:
        return self.state == PENDING


class Slurm(Protocol):
    def submit(self, arguments: list[str], script: str) -> int:
        """`sbatch` the script with these options; the new job's id.

        Raises Unsatisfiable when Slurm rejects the job for good, BackendUnavailable otherwise."""

    def queue(self) -> list[Job]:
        """Every job squeue shows, in one call. Raises BackendUnavailable when it cannot answer."""

    def cancel(self, job_id: int) -> None:
        """`scancel` a job (gone already is fine)."""

    def renice(self, job_id: int, nice: int) -> None:
        """Give a pending job a new nice value (its place in Slurm's queue)."""
