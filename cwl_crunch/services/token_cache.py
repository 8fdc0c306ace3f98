"""Recently seen user tokens, so most requests authenticate without a database round trip."""

from __future__ import annotations

import time
from typing import Any


class TokenCache:
    """User tokens looked up in the last `ttl` seconds, by secret hash.

    Only user tokens: nothing changes them but time, and expiry is checked at every use. Container
    tokens are deleted when their container stops, so they are looked up every time. The TTL bounds
    how long a token removed from the database by hand keeps working in a running server.
    """

    def __init__(self, ttl: float = 60.0, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._tokens: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, secret_hash: str) -> dict[str, Any] | None:
        entry = self._tokens.get(secret_hash)
        return entry[1] if entry is not None and time.monotonic() - entry[0] < self.ttl else None

    def put(self, secret_hash: str, token: dict[str, Any]) -> None:
        if token["container_uuid"] is not None:
            return
        if len(self._tokens) >= self.capacity:
            self._tokens.clear()  # rare: a server sees few distinct users
        self._tokens[secret_hash] = (time.monotonic(), token)
