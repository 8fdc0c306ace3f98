"""Where a run's progress goes: its own container's `runtime_status`, or the terminal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..client import ApiError
from ..domain.progress import Progress
from .keepfs import Keep

logger = logging.getLogger("cwltool.crunch")
PERIOD = 1.0
TAIL_LINES = 40


class Reporter:
    """Publishes `progress` when it changes: at most once per `PERIOD`, at once on the first failure."""

    def __init__(self, progress: Progress, publish: Callable[[dict[str, Any]], None]) -> None:
        self.progress = progress
        self.activity = "initialization"
        self._publish = publish
        self._wake = threading.Event()
        self._urgent = False
        self._dirty = True
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="report", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Publish the final state, then stop."""
        self._done.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        else:
            self.flush()

    def set_activity(self, activity: str) -> None:
        self.activity = activity
        self.changed()

    def changed(self) -> None:
        self._dirty = True

    def failed(self, first: bool) -> None:
        self._dirty = True
        if first:
            self._urgent = True
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            self._dirty = self._urgent = False
            status = self.progress.runtime_status(self.activity)
        try:
            self._publish(status)
        except (ApiError, OSError) as error:
            logger.warning("cannot publish the run's status: %s", error)

    def _run(self) -> None:
        last = 0.0
        while not self._done.is_set():
            self._wake.wait(PERIOD)
            self._wake.clear()
            if self._dirty and (self._urgent or time.monotonic() - last >= PERIOD):
                self.flush()
                last = time.monotonic()
        self.flush()


def terminal_publisher() -> Callable[[dict[str, Any]], None]:
    """A progress line on stderr when the counters or the error change."""
    shown: dict[str, Any] = {}

    def publish(status: dict[str, Any]) -> None:
        if status == shown:
            return
        shown.clear()
        shown.update(status)
        line = (f"{status['jobsComplete']} complete · {status['jobsRunning']} running · "
                f"{status['jobsWaiting']} waiting · {status['jobsFailed']} failed")
        logger.info("[%s] %s%s", status["activity"], line, f" — {status['error']}" if "error" in status else "")

    return publish


def log_tail(keep: Keep, request: dict[str, Any], lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a finished request's stderr and stdout, merged by their timestamps."""
    if not request.get("log_uuid") or not request.get("container_uuid"):
        return []
    prefix = f"log for container {request['container_uuid']}/"
    try:
        manifest = keep.manifest(request["log_uuid"])
        merged: list[str] = []
        for name in ("stderr.txt", "stdout.txt"):
            if prefix + name in manifest.files:
                merged.extend(keep.read(manifest.files[prefix + name]).decode(errors="replace").splitlines())
    except (ApiError, OSError) as error:
        return [f"(its logs cannot be read: {error})"]
    merged.sort(key=lambda line: line[:30])  # every line starts with a fixed-width UTC stamp
    return merged[-lines:]
