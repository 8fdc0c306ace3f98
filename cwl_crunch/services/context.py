"""What every service needs: the store, the settings and a clock (injectable for tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..settings import Settings
from ..store import Store
from .token_cache import TokenCache


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Context:
    store: Store
    settings: Settings
    clock: Callable[[], datetime] = field(default=utc_now)
    tokens: TokenCache = field(default_factory=TokenCache)

    def now(self) -> datetime:
        return self.clock()
