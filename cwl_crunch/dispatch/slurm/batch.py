"""Pure decisions of the Slurm backend, tested by value: the sbatch options and batch script of a
container, its nice value, the scheduling status of a waiting job, and which failures are final."""

from __future__ import annotations

import math
import shlex
from typing import Any

from ...domain.priority import request_priority_of
from .base import Job

MiB = 1 << 20
MAX_REQUEST_PRIORITY = 1000
# crunch-run enforces max_run_time itself (cause `timeout`, not retried). Slurm's limit is only a
# backstop, so it leaves time to stage inputs and save outputs: were Slurm to kill crunch-run
# first, the container would end as lost infrastructure and be retried.
TIME_LIMIT_SLACK_SECONDS = 300
_SUBMISSION_FAILED = "batch job submission failed:"
# sbatch's refusals that resubmitting can never cure (slurm/src/common/slurm_errno.c texts).
_PERMANENT_REJECTIONS = (
    "requested node configuration is not available",
    "memory required by task is not available",
    "more processors requested than permitted",
    "invalid partition name specified",
    "requested partition configuration not available",
    "requested time limit is invalid",
    "node count specification invalid",
    "invalid account or account/partition combination",
    "job violates accounting/qos policy",
    "invalid generic resource",
    "invalid feature specification",
)
# Pending reasons of an accepted job that will never start without an administrator.
IMPOSSIBLE_REASONS = frozenset({"BadConstraints", "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit"})


def nice_for(priority: int) -> int:
    """Slurm's nice value for a container priority: the higher the request priority (0..1000), the
    lower the nice, so Slurm starts important work first. Within one request priority Slurm keeps
    submission order, which is the container priority's own tie-break (older first)."""
    return MAX_REQUEST_PRIORITY - min(request_priority_of(priority), MAX_REQUEST_PRIORITY)


def sbatch_arguments(container: dict[str, Any], comment: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The sbatch options for a container; `comment` marks the job as this dispatcher's."""
    constraints = container.get("runtime_constraints") or {}
    scheduling = container.get("scheduling_parameters") or {}
    arguments = [
        f"--job-name={container['uuid']}",
        f"--comment={comment}",
        f"--cpus-per-task={max(1, math.ceil(float(constraints.get('vcpus') or 1)))}",
    ]
    ram = int(constraints.get("ram") or 0)
    if ram > 0:  # none asked: the partition's default (--mem=0 would claim the whole node)
        arguments.append(f"--mem={math.ceil(ram / MiB)}")
    arguments.append(f"--nice={nice_for(int(container.get('priority') or 0))}")
    max_run_time = int(scheduling.get("max_run_time") or 0)
    if max_run_time > 0:
        arguments.append(f"--time={math.ceil((max_run_time + TIME_LIMIT_SLACK_SECONDS) / 60)}")
    partitions = [p for p in scheduling.get("partitions") or [] if p]
    if partitions:
        arguments.append(f"--partition={','.join(partitions)}")
    return [*arguments, *extra]


def render_batch_script(uuid: str, crunch_run: list[str]) -> str:
    """The batch script: crunch-run for one container, replacing the shell so that the signals
    Slurm sends on scancel or at the time limit reach crunch-run itself."""
    command = " ".join(shlex.quote(word) for word in [*crunch_run, uuid])
    return f"#!/bin/sh\n# cwl-crunch: run container {uuid}\nexec {command}\n"


def waiting_status(job: Job) -> str:
    """The scheduling status of a container whose job Slurm has not started."""
    return f"In slurm queue: job {job.job_id} {job.state.lower()} ({job.reason})."


def rejection(stderr: str) -> str | None:
    """Slurm's reason when sbatch's error output says the job can never be accepted; None when
    the failure may be transient (the controller down or busy, a timeout)."""
    for line in stderr.splitlines():
        lowered = line.lower()
        if _SUBMISSION_FAILED in lowered and any(text in lowered for text in _PERMANENT_REJECTIONS):
            return line[lowered.index(_SUBMISSION_FAILED) + len(_SUBMISSION_FAILED):].strip()
    return None
