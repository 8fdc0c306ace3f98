"""How a container's run ends: a step's failure, and the final state, decided exactly once (SPEC §7).

A signal can arrive while output is being saved; whichever decision comes first stands, so a
Complete cannot turn into Cancelled afterwards, or the other way round.
"""

from __future__ import annotations

import threading


class Failure(Exception):
    """A step failed: the container ends `state` with `cause` and `error` (Queued = unlock)."""

    def __init__(self, error: str, cause: str = "infrastructure", state: str = "Cancelled") -> None:
        super().__init__(error)
        self.error, self.cause, self.state = error, cause, state


class Outcome:
    """The final state, decided once; later decisions are ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: str | None = None
        self.cause: str | None = None
        self.error: str | None = None

    def decide(self, state: str, cause: str | None = None, error: str | None = None) -> bool:
        with self._lock:
            if self.state is not None:
                return False
            self.state, self.cause, self.error = state, cause, error
            return True
