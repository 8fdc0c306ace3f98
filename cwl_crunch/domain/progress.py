"""A workflow runner's view of its children (SPEC §10 "Aggregation"): counters and the error.

Pure: the runner feeds it child outcomes and publishes `runtime_status()` on its own container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ChildState(str, Enum):
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


COUNTER = {
    ChildState.WAITING: "jobsWaiting",
    ChildState.RUNNING: "jobsRunning",
    ChildState.COMPLETE: "jobsComplete",
    ChildState.FAILED: "jobsFailed",
}
FINISHED = frozenset({ChildState.COMPLETE, ChildState.FAILED})


def child_state(container_state: str | None) -> ChildState:
    """Waiting or running, from a live child's container state."""
    return ChildState.RUNNING if container_state == "Running" else ChildState.WAITING


def error_text(first: str, failures: int) -> str:
    """`"<first error> (N additional errors)"`; the first error alone for one failure."""
    return first if failures <= 1 else f"{first} ({failures - 1} additional errors)"


@dataclass
class Progress:
    children: dict[str, ChildState] = field(default_factory=dict)
    first_error: str | None = None
    error_detail: str | None = None
    failures: int = 0
    warnings: list[str] = field(default_factory=list)

    def update(self, uuid: str, state: ChildState) -> bool:
        """Record a child's state; whether anything changed (a finished child stays finished)."""
        old = self.children.get(uuid)
        if old == state or old in FINISHED:
            return False
        self.children[uuid] = state
        return True

    def fail(self, uuid: str, message: str, detail: str = "") -> bool:
        """Record a failed child; True for the run's first failure (published at once)."""
        if self.children.get(uuid) == ChildState.FAILED:
            return False
        self.children[uuid] = ChildState.FAILED
        self.failures += 1
        if self.first_error is None:
            self.first_error, self.error_detail = message, detail
            return True
        return False

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def counters(self) -> dict[str, int]:
        counts = dict.fromkeys(COUNTER.values(), 0)
        for state in self.children.values():
            counts[COUNTER[state]] += 1
        return counts

    def running(self) -> list[str]:
        return [uuid for uuid, state in self.children.items() if state == ChildState.RUNNING]

    def runtime_status(self, activity: str) -> dict[str, Any]:
        """What the runner's own container shows (keys it does not own are left alone)."""
        status: dict[str, Any] = {"activity": activity, **self.counters()}
        if self.first_error is not None:
            status["error"] = error_text(self.first_error, self.failures)
            status["errorDetail"] = self.error_detail or ""
        if self.warnings:
            status["warning"] = error_text(self.warnings[0], len(self.warnings))
        return status

    def summary(self) -> str:
        """`12 complete · 3 running · 5 waiting · 1 failed`."""
        return counters_text(self.counters()) or ""


_SHOWN_ORDER = (ChildState.COMPLETE, ChildState.RUNNING, ChildState.WAITING, ChildState.FAILED)


def counters_text(runtime_status: dict[str, Any] | None) -> str | None:
    """A runner's counters as people read them (`12 complete · 3 running · 5 waiting · 1 failed`);
    None when the runtime_status holds none (the container is not a workflow runner)."""
    status = runtime_status or {}
    if not any(COUNTER[s] in status for s in _SHOWN_ORDER):
        return None
    return " · ".join(f"{int(status.get(COUNTER[s]) or 0)} {s.value}" for s in _SHOWN_ORDER)
