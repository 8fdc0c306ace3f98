"""The real Slurm commands (sbatch, squeue, scancel, scontrol), run as subprocesses."""

from __future__ import annotations

import logging
import subprocess

from ..backends import BackendUnavailable, Unsatisfiable
from .base import Job
from .batch import rejection

log = logging.getLogger(__name__)
# Job id, name, state, reason, nice and comment; the comment goes last, so a '|' in it is harmless.
SQUEUE_FORMAT = "%i|%j|%T|%r|%y|%k"


class SlurmCommands:
    def __init__(self, environment: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        """`environment`: for the commands (SLURM_CONF, ...) and inherited by the jobs (sbatch
        exports the caller's environment); None: this process's."""
        self.environment = environment
        self.timeout = timeout

    def submit(self, arguments: list[str], script: str) -> int:
        result = self._run(["sbatch", "--parsable", *arguments], script)
        if result.returncode != 0:
            reason = rejection(result.stderr)
            if reason is not None:
                raise Unsatisfiable(f"slurm rejected the job: {reason}")
            raise BackendUnavailable(f"sbatch failed: {_last_line(result.stderr)}")
        try:  # --parsable prints "<job id>" or "<job id>;<cluster>"
            return int(result.stdout.strip().split(";")[0])
        except ValueError:
            raise BackendUnavailable(f"sbatch printed no job id: {result.stdout.strip()!r}") from None

    def queue(self) -> list[Job]:
        result = self._run(["squeue", "--noheader", f"--format={SQUEUE_FORMAT}"])
        if result.returncode != 0:
            raise BackendUnavailable(f"squeue failed: {_last_line(result.stderr)}")
        return parse_squeue(result.stdout)

    def cancel(self, job_id: int) -> None:
        result = self._run(["scancel", str(job_id)])
        if result.returncode != 0:
            log.warning("scancel %s: %s", job_id, _last_line(result.stderr))

    def renice(self, job_id: int, nice: int) -> None:
        result = self._run(["scontrol", "update", f"JobId={job_id}", f"Nice={nice}"])
        if result.returncode != 0:
            log.warning("scontrol update JobId=%s Nice=%s: %s", job_id, nice, _last_line(result.stderr))

    def _run(self, command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(command, input=stdin, capture_output=True, text=True, env=self.environment,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(f"{command[0]} did not answer within {self.timeout:g} s") from None
        except OSError as error:
            raise BackendUnavailable(f"cannot run {command[0]}: {error}") from None


def parse_squeue(text: str) -> list[Job]:
    """squeue's lines in SQUEUE_FORMAT; lines that do not parse (a job array's summary) are skipped."""
    jobs = []
    for line in text.splitlines():
        fields = line.strip().split("|", 5)
        if len(fields) != 6:
            continue
        job_id, name, state, reason, nice, comment = fields
        try:
            jobs.append(Job(int(job_id), name, state, reason, int(nice), comment))
        except ValueError:
            continue
    return jobs


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no error message)"
