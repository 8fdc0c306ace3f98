"""The local backend: crunch-run as child processes of this host, adoptable after a restart.

Each crunch-run gets its own session (so the dispatcher dying does not kill it) and a pid file
in the dispatcher's state directory; a restarted dispatcher adopts the live ones by pid file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import Capacity


class LocalBackend:
    name = "local"

    def __init__(self, capacity: Capacity, state_dir: Path, environment: dict[str, str],
                 command: list[str] | None = None) -> None:
        self.capacity = capacity
        self.state_dir = state_dir
        self.environment = environment  # CRUNCH_API, CRUNCH_DISPATCH_TOKEN, CRUNCH_BLOB_ROOT, ...
        self.command = command or [sys.executable, "-m", "cwl_crunch.cli.main", "run-container"]
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        state_dir.mkdir(parents=True, exist_ok=True)

    def start(self, container: dict[str, Any]) -> None:
        uuid = container["uuid"]
        log = (self.state_dir / f"{uuid}.log").open("ab")
        try:
            child = subprocess.Popen(
                [*self.command, uuid], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **self.environment}, start_new_session=True,
            )
        finally:
            log.close()
        self.children[uuid] = child
        (self.state_dir / f"{uuid}.pid").write_text(str(child.pid))

    def alive(self) -> set[str]:
        live = set()
        for pid_file in self.state_dir.glob("*.pid"):
            uuid = pid_file.stem
            child = self.children.get(uuid)
            if child is not None:
                running = child.poll() is None
            else:  # started by an earlier run of the dispatcher: adopt it if it is still there
                running = _is_crunch_run(pid_file, uuid)
            if running:
                live.add(uuid)
            else:
                self.children.pop(uuid, None)
                pid_file.unlink(missing_ok=True)
        return live

    def stop(self, uuid: str) -> None:
        pid_file = self.state_dir / f"{uuid}.pid"
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def _is_crunch_run(pid_file: Path, uuid: str) -> bool:
    """Whether the pid in `pid_file` is still a crunch-run of `uuid` (pids get reused)."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return False
    return stat[0] != "Z" and uuid.encode() in cmdline and b"run-container" in cmdline
