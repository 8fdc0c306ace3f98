"""A container's work directory on the worker: `WORK_ROOT/<uuid>/` with a numbered directory per
staged mount (the output among them) and `log/`, which holds a log only when it outgrows memory
(`LogFile`) or when the log collection could not be saved (then all of it, `container.json` and
`node.json` too, for a look).

Made fresh for each attempt, and removed once everything in it has been saved elsewhere. Also
the worker's temporary directory, when TMPDIR names one that is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import crunchstat
from .logs import LiveSender, LogFile, Throttle

LOG_FILES = ("crunch-run.txt", "stdout.txt", "stderr.txt", "crunchstat.txt")


def prepare(workdir: Path, live: LiveSender) -> dict[str, LogFile]:
    """The logs by name, for a work directory made empty (a previous attempt's on this worker is
    removed); the directory itself is made by whatever first needs it."""
    if workdir.exists():
        remove(workdir)
    logs = {}
    for name in LOG_FILES:
        echo = sys.stderr.buffer if name == "crunch-run.txt" else None  # crunch-run's own lines: on stderr too
        throttle = Throttle() if name != "crunch-run.txt" else None
        logs[name] = LogFile(workdir / "log" / name, live, throttle, echo)
    return logs


def records(container: dict[str, Any], engine: str | None) -> dict[str, bytes]:
    """The log collection's other files: the container as it started and the node it ran on."""
    record = {k: v for k, v in container.items() if k not in ("auth", "secret_mounts")}
    node = crunchstat.node_facts(engine or "none")
    return {"container.json": json.dumps(record, indent=2, sort_keys=True).encode(),
            "node.json": json.dumps(node, indent=2, sort_keys=True).encode()}


def write_out(workdir: Path, logs: dict[str, LogFile], files: dict[str, bytes]) -> None:
    """Everything of the log collection in `log/`, for a look: it could not be saved."""
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    for log in logs.values():
        log.write_out()
    for name, data in files.items():
        (workdir / "log" / name).write_bytes(data)


def remove(workdir: Path) -> None:
    """Remove a work directory, even where the container's process made parts of it read-only."""
    def writable_then_retry(function: Any, failed: str, _: Any) -> None:
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
        function(failed)

    try:
        shutil.rmtree(workdir, onerror=writable_then_retry)
    except OSError as error:
        print(f"crunch-run: cannot remove {workdir}: {error}", file=sys.stderr)


def forget_missing_tmpdir() -> None:
    """Use the default temporary directory (for us and the container engine) if TMPDIR names one
    that does not exist, such as that of a command which started the dispatcher and has ended."""
    temporary = os.environ.get("TMPDIR")
    if temporary and not os.path.isdir(temporary):
        print(f"crunch-run: TMPDIR {temporary} does not exist; using the default", file=sys.stderr)
        del os.environ["TMPDIR"]
        tempfile.tempdir = None  # computed again, without it
