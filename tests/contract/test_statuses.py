"""The SQL form of the derived status agrees with `derived_status`, on SQLite and PostgreSQL.

Every combination of the inputs the Python rules read is stored once; for each status, the
database must select exactly the requests Python gives that status, so the conditions are
disjoint, cover everything, and mean the same as the rules.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from cwl_crunch.domain.errors import Invalid
from cwl_crunch.domain.status import STATUSES, derived_status
from cwl_crunch.store import Store
from cwl_crunch.store.schema import container_requests, containers
from cwl_crunch.store.statuses import status_condition
from tests.support.seeding import container_row, insert_rows, request_row

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
OWNER = "zzzzz-tpzed-000000000000001"
RUNTIME_STATUSES = [
    {}, {"error": "boom"}, {"error": ""}, {"warning": "slow"}, {"error": "boom", "warning": "slow"},
    {"warning": ""}, {"cause": "infrastructure"}, {"cause": "user"}, {"cause": "setup", "error": "no command"},
]
CONTAINER_STATES = [None, "Queued", "Locked", "Running", "Complete", "Cancelled"]


def _outcomes(state: str | None) -> list[tuple[int | None, datetime | None]]:
    """(exit code, finished_at) worth trying for a container state: only Complete reads them."""
    if state != "Complete":
        return [(None, None)]
    return list(itertools.product([None, 0, 1], [None, NOW - timedelta(hours=1), NOW + timedelta(hours=1)]))


def _cases() -> tuple[list[dict], list[dict]]:
    requests, containers_ = [], []
    number = 0
    for request_state, container_state in itertools.product(["Uncommitted", "Committed", "Final"], CONTAINER_STATES):
        statuses = RUNTIME_STATUSES if container_state else [{}]
        for held, priority, count, runtime_status, (exit_code, finished_at) in itertools.product(
            [False, True], [0, 500], [1, 2], statuses, _outcomes(container_state)
        ):
            number += 1
            container = None
            if container_state is not None:
                container = container_row(number, NOW, state=container_state, runtime_status=runtime_status,
                                          exit_code=exit_code, finished_at=finished_at)
                containers_.append(container)
            requests.append(request_row(number, OWNER, NOW, state=request_state, container=container,
                                        held=held, priority=priority, container_count=count))
    return requests, containers_


def _selected(store: Store, status: str) -> set[str]:
    r = container_requests
    query = (select(r.c.uuid).select_from(r.outerjoin(containers, containers.c.uuid == r.c.container_uuid))
             .where(status_condition(status)))
    with store.read() as tx:
        return set(tx.conn.execute(query).scalars())


def test_each_status_selects_exactly_the_requests_python_gives_it(store: Store) -> None:
    requests, containers_ = _cases()
    insert_rows(store, requests, containers_)
    by_uuid = {c["uuid"]: c for c in containers_}
    expected: dict[str, set[str]] = {status: set() for status in STATUSES}
    for request in requests:
        expected[derived_status(request, by_uuid.get(request["container_uuid"]))].add(request["uuid"])

    assert all(expected[s] for s in STATUSES), "every status must occur among the cases"
    for status in STATUSES:
        assert _selected(store, status) == expected[status], status


def test_an_unknown_status_is_refused_by_name() -> None:
    with pytest.raises(Invalid) as caught:
        status_condition("Exploded")
    assert "'Exploded' is not one of Uncommitted, Queued, On hold" in caught.value.messages[0]
