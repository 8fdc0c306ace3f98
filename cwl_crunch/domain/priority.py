"""Container priority: an integer that orders by request priority, then older requests first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

# Room for creation times in milliseconds (until the year 2527) below the request priority.
_SHIFT = 50


def request_rank(priority: int, created_at: datetime) -> int:
    """The container priority one top-level request asks for (0 when it wants nothing)."""
    if priority <= 0:
        return 0
    return (priority << _SHIFT) - int(created_at.timestamp() * 1000)


def container_priority(ranks: Iterable[int]) -> int:
    """The maximum of what the live requests ask for; 0 when none does."""
    return max((rank for rank in ranks if rank > 0), default=0)


def request_priority_of(rank: int) -> int:
    """The request priority (0..1000) a container priority came from, for display."""
    return (rank + (1 << _SHIFT) - 1) >> _SHIFT if rank > 0 else 0
