"""Seeing one container costs the same however long the user's history: the visibility check
probes the container's requests by index rather than gathering every container the user ever had.

Work is counted in SQLite virtual-machine steps (a progress handler), not timed: the count does
not depend on the machine, and it is what grew with the history (4 ms per container read after
1,200 requests, before).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from cwl_crunch.domain.principal import Principal
from cwl_crunch.services.access import can_see_container
from cwl_crunch.store import Store
from tests.support.seeding import (
    container_row,
    insert_rows,
    request_row,
    seconds_apart,
    uuid,
)
from tests.support.sqlite_steps import counted

ALICE, BOB = "zzzzz-tpzed-000000000000001", "zzzzz-tpzed-000000000000002"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _seed(store: Store, owner: str, first: int, count: int) -> None:
    containers = [container_row(n, seconds_apart(START, n), state="Complete", exit_code=0) for n in range(first, first + count)]
    requests = [request_row(n, owner, seconds_apart(START, n), state="Final", container=c)
                for n, c in zip(range(first, first + count), containers)]
    insert_rows(store, requests, containers)


def _steps(store: Store, principal: Principal, container_uuid: str) -> tuple[bool, int]:
    """Whether the principal sees the container, and the SQLite steps it took to find out."""
    return counted(store, lambda tx: can_see_container(tx, principal, container_uuid))


def test_checking_one_container_does_not_walk_the_users_history(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, tmp_path / "crunch.sqlite3")
    store = Store(f"sqlite:///{tmp_path / 'crunch.sqlite3'}")
    try:
        alice = Principal(user_uuid=ALICE, token_uuid="zzzzz-gj3su-000000000000001")
        bob = Principal(user_uuid=BOB, token_uuid="zzzzz-gj3su-000000000000002")
        _seed(store, ALICE, 0, 20)
        _seed(store, BOB, 20, 1)
        mine, other = uuid("dz642", 10), uuid("dz642", 20)
        seen, before = _steps(store, alice, mine)
        assert seen and not _steps(store, alice, other)[0] and _steps(store, bob, other)[0]

        _seed(store, ALICE, 100, 3000)  # a long history
        seen, after = _steps(store, alice, mine)
        assert seen and not _steps(store, alice, other)[0]
        assert after <= 2 * before + 10, (before, after)
    finally:
        store.dispose()
