"""Container and container-request states, and the tables of allowed transitions."""

from __future__ import annotations

import enum

from .errors import InvalidTransition


class ContainerState(str, enum.Enum):
    QUEUED = "Queued"
    LOCKED = "Locked"
    RUNNING = "Running"
    COMPLETE = "Complete"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_CONTAINER_STATES


class RequestState(str, enum.Enum):
    UNCOMMITTED = "Uncommitted"
    COMMITTED = "Committed"
    FINAL = "Final"


# The scheduling status a container gets when locked: a dispatcher is starting crunch-run for it.
LOCKED_STATUS = "Preparing runtime environment."
FINAL_CONTAINER_STATES = frozenset({ContainerState.COMPLETE, ContainerState.CANCELLED})

# `None` stands for "the object does not exist yet".
CONTAINER_TRANSITIONS: dict[ContainerState | None, frozenset[ContainerState]] = {
    None: frozenset({ContainerState.QUEUED}),
    ContainerState.QUEUED: frozenset({ContainerState.LOCKED, ContainerState.CANCELLED}),
    ContainerState.LOCKED: frozenset({ContainerState.QUEUED, ContainerState.RUNNING, ContainerState.CANCELLED}),
    ContainerState.RUNNING: frozenset({ContainerState.COMPLETE, ContainerState.CANCELLED}),
    # Only an admin may withdraw a completed result from reuse (checked by the service).
    ContainerState.COMPLETE: frozenset({ContainerState.CANCELLED}),
    ContainerState.CANCELLED: frozenset(),
}

REQUEST_TRANSITIONS: dict[RequestState | None, frozenset[RequestState]] = {
    None: frozenset({RequestState.UNCOMMITTED, RequestState.COMMITTED}),
    RequestState.UNCOMMITTED: frozenset({RequestState.COMMITTED}),
    RequestState.COMMITTED: frozenset({RequestState.FINAL}),
    RequestState.FINAL: frozenset(),
}


def _label(state: enum.Enum | None) -> str:
    return "(new)" if state is None else str(state.value)


def require_container_transition(old: ContainerState | None, new: ContainerState) -> None:
    """Raise InvalidTransition unless `old` → `new` is in the container table."""
    if old == new or new not in CONTAINER_TRANSITIONS[old]:
        raise InvalidTransition(f"cannot change state from {_label(old)} to {_label(new)}")


def require_request_transition(old: RequestState | None, new: RequestState) -> None:
    """Raise InvalidTransition unless `old` → `new` is in the request table."""
    if old == new or new not in REQUEST_TRANSITIONS[old]:
        raise InvalidTransition(f"cannot change state from {_label(old)} to {_label(new)}")


def parse_container_state(value: object) -> ContainerState:
    try:
        return ContainerState(value)
    except ValueError:
        names = ", ".join(s.value for s in ContainerState)
        raise InvalidTransition(f"state: {value!r} is not one of {names}") from None


def parse_request_state(value: object) -> RequestState:
    try:
        return RequestState(value)
    except ValueError:
        names = ", ".join(s.value for s in RequestState)
        raise InvalidTransition(f"state: {value!r} is not one of {names}") from None
