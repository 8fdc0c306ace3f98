"""One CommandLineTool job as one container request (SPEC §10): a pure function of the job."""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from typing import Any

OUTPUT_PATH = "/var/spool/cwl"
TMP_PATH = "/tmp"
MIB = 1 << 20
SECRET_COMMAND = "/var/lib/cwl/secret-command.sh"


@dataclass(frozen=True)
class Staged:
    """A collection (or a path in it) placed at `target`."""

    pdh: str
    target: str
    path: str = ""
    # The collection's manifest, for the service to save with the request (`Keep.stage`); sent
    # in one mount of each collection.
    manifest: dict[str, Any] | None = field(default=None, compare=False)


@dataclass
class JobSpec:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    inputs: Staged | None = None
    generated: list[Staged] = field(default_factory=list)
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    cores: float = 1
    ram_mib: float = 256
    outdir_mib: float = 1024
    tmpdir_mib: float = 1024
    time_limit: int | None = None
    network: bool = False
    reuse: bool = True
    image: str | None = None
    priority: int = 500
    properties: dict[str, Any] = field(default_factory=dict)
    secret_command: str | None = None  # a script holding secret values: run from a secret mount
    output_path: str = OUTPUT_PATH  # another with DockerRequirement's dockerOutputDirectory


def build_request(job: JobSpec) -> dict[str, Any]:
    """The container request that runs `job`; equal jobs give equal requests (so reuse works)."""
    mounts: dict[str, Any] = {
        job.output_path: {"kind": "tmp", "capacity": _bytes(job.outdir_mib)},
        TMP_PATH: {"kind": "tmp", "capacity": _bytes(job.tmpdir_mib)},
    }
    if job.inputs is not None:
        mounts[job.inputs.target] = _collection(job.inputs)
    for staged in job.generated:
        mounts[staged.target] = _collection(staged)
    if job.stdin:
        mounts["stdin"] = _stdin(job)
    for stream, path in (("stdout", job.stdout), ("stderr", job.stderr)):
        if path:
            mounts[stream] = {"kind": "file", "path": posixpath.join(job.output_path, path)}
    constraints: dict[str, Any] = {"vcpus": max(1, math.ceil(job.cores)), "ram": _bytes(job.ram_mib)}
    if job.network:
        constraints["API"] = True
    scheduling: dict[str, Any] = {}
    if job.time_limit:
        scheduling["max_run_time"] = int(job.time_limit)
    environment = {"HOME": job.output_path, "TMPDIR": TMP_PATH, **job.environment}
    command = job.command
    secret_mounts: dict[str, Any] = {}
    if job.secret_command is not None:
        secret_mounts[SECRET_COMMAND] = {"kind": "text", "content": job.secret_command}
        command = ["/bin/sh", SECRET_COMMAND]
    return {
        "name": job.name,
        "state": "Committed",
        "priority": job.priority,
        "command": command,
        "secret_mounts": secret_mounts,
        "cwd": job.output_path,
        "output_path": job.output_path,
        "environment": environment,
        "mounts": mounts,
        "runtime_constraints": constraints,
        "scheduling_parameters": scheduling,
        "container_image": job.image or "",
        "use_existing": job.reuse,
        "properties": job.properties,
    }


def _collection(staged: Staged) -> dict[str, Any]:
    mount: dict[str, Any] = {"kind": "collection", "portable_data_hash": staged.pdh}
    if staged.path:
        mount["path"] = staged.path
    if staged.manifest is not None:
        mount["manifest"] = staged.manifest
    return mount


def _stdin(job: JobSpec) -> dict[str, Any]:
    """stdin is a file the job references, so it lies in the staging collection."""
    assert job.stdin is not None
    if job.inputs is not None and job.stdin.startswith(job.inputs.target + "/"):
        return _collection(Staged(job.inputs.pdh, "stdin", job.stdin[len(job.inputs.target) + 1:]))
    for staged in job.generated:
        if job.stdin == staged.target:
            return _collection(Staged(staged.pdh, "stdin", staged.path))
    raise ValueError(f"stdin {job.stdin!r} is not one of the job's files")


def _bytes(mib: float) -> int:
    return math.ceil(mib) * MIB
