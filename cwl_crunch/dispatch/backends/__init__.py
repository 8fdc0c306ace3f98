"""Where a dispatcher runs crunch-run: one small interface, one module per backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Capacity:
    """What a dispatcher may run at once. vCPUs and RAM of None: not limited by the dispatcher,
    because the backend's own scheduler (Slurm) decides what runs when."""

    vcpus: float | None
    ram: int | None
    supervisors: int = 4  # workflow runners at once (not counted against vCPUs: SPEC §6)

    @property
    def bounded(self) -> bool:
        return self.vcpus is not None


@dataclass
class Tracking:
    """What a backend found out about this dispatcher's containers in one reconciliation."""

    waiting: dict[str, str] = field(default_factory=dict)  # uuid → why a Locked one has not started yet
    impossible: dict[str, str] = field(default_factory=dict)  # uuid → why it can never run (already stopped)


class Unsatisfiable(Exception):
    """The backend can never run this container (its reason is the message)."""


class BackendUnavailable(Exception):
    """The backend cannot take work just now (its scheduler is down, a command failed); try later."""


class Backend(Protocol):
    name: str
    capacity: Capacity
    queue_activity: str | None  # runtime_status.activity of a container waiting in the backend's queue
    # True: `start` is given Queued containers, and crunch-run locks each itself as it begins
    # (for this dispatcher, as `bind` named it); False: the dispatcher locks them first.
    locks_itself: bool

    def bind(self, dispatcher_uuid: str) -> None:
        """The dispatcher's identity, once registered (a backend may mark its work with it)."""

    def start(self, container: dict[str, Any]) -> None:
        """Launch crunch-run for a container this dispatcher has just locked (or, if the backend
        `locks_itself`, for a Queued one).

        Raises Unsatisfiable when the backend rejects it for good, BackendUnavailable (or OSError)
        when it cannot take it now."""

    def alive(self) -> set[str]:
        """Uuids of the containers whose crunch-run is running or due to run (started or adopted)."""

    def track(self, mine: list[dict[str, Any]], now: float) -> Tracking:
        """Bring the backend in line with this dispatcher's Locked/Running containers, as listed
        just after `alive()`: stop work nobody wants any more, pass on new priorities, and say why
        Locked ones are still waiting."""
