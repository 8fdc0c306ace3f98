"""Work counted in SQLite virtual-machine steps rather than timed: the count does not depend on the
machine, and it is what grows when a query walks a history it should not."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cwl_crunch.store import Store
from cwl_crunch.store.repository import Repository

T = TypeVar("T")


def counted(store: Store, work: Callable[[Repository], T]) -> tuple[T, int]:
    """`work`'s answer in a read transaction, and about how many steps (in tens) SQLite took for it."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    with store.read() as tx:
        raw = tx.conn.connection.dbapi_connection
        raw.set_progress_handler(count, 10)
        try:
            answer = work(tx)
        finally:
            raw.set_progress_handler(None, 0)
    return answer, steps
