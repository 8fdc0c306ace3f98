"""Which attributes a client may write, per state and per transition, and which a dispatcher reads.

The service checks every update against these tables; anything else is a 422 naming the
attribute. Server-computed attributes (priority, lock_count, timestamps, …) never appear here.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Invalid
from .states import ContainerState as C
from .states import RequestState as R

# Container attributes a dispatcher/crunch-run (admin token) may write while the container
# stays in a state.
CONTAINER_WRITABLE_IN_STATE: dict[C, frozenset[str]] = {
    C.QUEUED: frozenset({"scheduling_status"}),
    C.LOCKED: frozenset({"runtime_status", "progress", "log", "scheduling_status"}),
    C.RUNNING: frozenset(
        {"runtime_status", "progress", "log", "output", "output_properties", "exit_code", "cost", "subrequests_cost"}
    ),
    C.COMPLETE: frozenset(),
    C.CANCELLED: frozenset(),
}

# Attributes that may accompany a state change (besides `state` itself).
_FINISH = frozenset(
    {"runtime_status", "progress", "log", "output", "output_properties", "exit_code", "cost", "subrequests_cost"}
)
CONTAINER_WRITABLE_ON_TRANSITION: dict[tuple[C, C], frozenset[str]] = {
    (C.QUEUED, C.LOCKED): frozenset(),
    (C.QUEUED, C.CANCELLED): frozenset({"runtime_status"}),
    (C.LOCKED, C.QUEUED): frozenset(),
    (C.LOCKED, C.RUNNING): frozenset({"runtime_status", "progress", "log"}),
    (C.LOCKED, C.CANCELLED): frozenset({"runtime_status", "log"}),
    (C.RUNNING, C.COMPLETE): _FINISH,
    (C.RUNNING, C.CANCELLED): _FINISH - {"exit_code"},
    (C.COMPLETE, C.CANCELLED): frozenset(),
}

# What a container token may write on its own container (only while Running).
CONTAINER_TOKEN_WRITABLE = frozenset({"runtime_status", "progress", "output", "output_properties"})

# Fields that define the work of a request; frozen once it is committed.
REQUEST_DEFINITION_FIELDS = frozenset(
    {
        "command",
        "cwd",
        "environment",
        "output_path",
        "output_glob",
        "container_image",
        "mounts",
        "secret_mounts",
        "runtime_constraints",
        "scheduling_parameters",
        "use_existing",
        "runtime_token",
    }
)
_ANNOTATIONS = frozenset({"name", "description", "properties"})
REQUEST_WRITABLE_IN_STATE: dict[R, frozenset[str]] = {
    R.UNCOMMITTED: REQUEST_DEFINITION_FIELDS
    | _ANNOTATIONS
    | {"state", "priority", "container_count_max", "output_name", "output_properties", "expires_at"},
    R.COMMITTED: _ANNOTATIONS
    | {"state", "priority", "container_count_max", "output_name", "output_properties", "expires_at"},
    R.FINAL: _ANNOTATIONS,
}
# Settable when creating a request, whatever its initial state.
REQUEST_CREATABLE = REQUEST_WRITABLE_IN_STATE[R.UNCOMMITTED]


def require_writable(attributes: Iterable[str], allowed: frozenset[str], where: str) -> None:
    """Raise Invalid naming every attribute of `attributes` that is not in `allowed`."""
    refused = sorted(set(attributes) - allowed)
    if refused:
        raise Invalid(*(f"{name}: cannot be changed {where}" for name in refused))


def require_container_update(old: C, new: C, attributes: Iterable[str]) -> None:
    """Check a container update (a state change or not) against the tables."""
    attributes = set(attributes) - {"state"}
    if old == new:
        require_writable(attributes, CONTAINER_WRITABLE_IN_STATE[old], f"while the container is {old.value}")
    else:
        allowed = CONTAINER_WRITABLE_ON_TRANSITION.get((old, new), frozenset())
        require_writable(attributes, allowed, f"when the container goes from {old.value} to {new.value}")


def require_request_update(state: R, attributes: Iterable[str]) -> None:
    """Check a container-request update against the per-state table."""
    require_writable(attributes, REQUEST_WRITABLE_IN_STATE[state], f"while the request is {state.value}")


# What a dispatcher needs to know of a queued container besides its uuid (not its mounts,
# environment, ...): what its queue listing selects, and what a container's create event carries
# (`queue_entry`) so that new work need not be listed.
QUEUE_ENTRY = ("priority", "runtime_constraints", "scheduling_parameters", "lock_count")
