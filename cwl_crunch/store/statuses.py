"""The derived request status (SPEC §4.4) as SQL conditions, so lists can filter on it in the database.

`domain.status.derived_status` decides a status in Python from one request and its container.
A list filtered by status cannot call it row by row without reading every row, so each status
is spelt out here as a condition on the request and its current container (outer-joined: the
container columns are NULL when the request has none). The conditions mirror the Python rules
branch by branch; tests/contract/test_statuses.py checks, over every combination of the inputs
those rules read, that exactly one condition holds and that it names the status Python derives.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from ..domain.errors import Invalid
from ..domain.status import PERMANENT_CAUSES, STATUSES
from .schema import container_requests, containers

_LIVE = ("Queued", "Locked", "Running")
_WAITING = ("Queued", "Locked")
_FINAL = ("Complete", "Cancelled")


def _text(key: str) -> ColumnElement[str]:
    """A string key of the container's runtime_status (NULL when absent)."""
    return containers.c.runtime_status[key].as_string()


def _present(key: str) -> ColumnElement[bool]:
    """Python's truth of a string key: present and not empty."""
    return and_(_text(key).is_not(None), _text(key) != "")


def status_condition(status: str) -> ColumnElement[bool]:
    """Rows of `container_requests LEFT JOIN containers ON containers.uuid = container_uuid` with this status."""
    if status not in STATUSES:
        raise Invalid(f"status: {status[:40]!r} is not one of {', '.join(STATUSES)}")
    return _conditions()[status]


def _conditions() -> dict[str, ColumnElement[bool]]:
    r, c = container_requests.c, containers.c
    has_container = c.uuid.is_not(None)
    committed = and_(r.state == "Committed", has_container)
    # The branches of derived_status for a Committed request that reach no final-state rule.
    held = and_(committed, r.held == true())
    active = and_(committed, r.held == false())
    cancelling = and_(active, r.priority == 0, c.state.in_(_LIVE))
    wanted = and_(active, r.priority != 0)
    running = and_(wanted, c.state == "Running")
    # Everything else with a container falls through to the final-state rules (`_final_status`).
    settled = and_(has_container, r.state != "Uncommitted",
                   not_(and_(r.state == "Committed", or_(r.held == true(), c.state.in_(_LIVE)))))
    complete_ok = and_(settled, c.state == "Complete", c.exit_code == 0)
    reused = and_(c.finished_at.is_not(None), c.finished_at < r.created_at)
    permanent = _text("cause").in_(sorted(PERMANENT_CAUSES))
    unknown_state = and_(settled, c.state.not_in(_FINAL))
    return {
        "Uncommitted": r.state == "Uncommitted",
        "Queued": or_(
            and_(c.uuid.is_(None), r.state.not_in(("Uncommitted", "Final"))),
            and_(wanted, c.state.in_(_WAITING), r.container_count <= 1),
            and_(unknown_state, r.state != "Final"),
        ),
        "On hold": held,
        "Cancelling": cancelling,
        "Retrying": and_(wanted, c.state.in_(_WAITING), r.container_count > 1),
        "Failing": and_(running, _present("error")),
        "Warning": and_(running, not_(_present("error")), _present("warning")),
        "Running": and_(running, not_(_present("error")), not_(_present("warning"))),
        "Completed": and_(complete_ok, not_(reused)),
        "Reused": and_(complete_ok, reused),
        "Failed": and_(settled, or_(
            and_(c.state == "Complete", or_(c.exit_code.is_(None), c.exit_code != 0)),
            and_(c.state == "Cancelled", permanent),
        )),
        "Cancelled": or_(
            and_(c.uuid.is_(None), r.state == "Final"),
            and_(settled, c.state == "Cancelled", or_(_text("cause").is_(None), not_(permanent))),
            and_(unknown_state, r.state == "Final"),
        ),
    }
