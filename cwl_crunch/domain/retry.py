"""Failure causes and the server's retry policy."""

from __future__ import annotations

from datetime import datetime, timedelta

# Causes worth another attempt: the work itself was never judged.
RETRYABLE_CAUSES = frozenset({"infrastructure"})
BACKOFF_START = timedelta(seconds=2)
BACKOFF_CAP = timedelta(minutes=5)


def is_retryable(cause: str | None) -> bool:
    """Only infrastructure failures are retried; setup, unsatisfiable, timeout, user are final."""
    return cause in RETRYABLE_CAUSES


def backoff(attempts_so_far: int) -> timedelta:
    """Delay before attempt `attempts_so_far + 1`: 2 s, 4 s, 8 s, … capped at 5 min."""
    exponent = max(attempts_so_far - 1, 0)
    if exponent >= 16:  # 2 s * 2**16 is far past the cap; avoid huge numbers
        return BACKOFF_CAP
    return min(BACKOFF_START * (2**exponent), BACKOFF_CAP)


def should_retry(cause: str | None, container_count: int, container_count_max: int) -> bool:
    return is_retryable(cause) and container_count < container_count_max


def next_not_before(now: datetime, attempts_so_far: int) -> datetime:
    return now + backoff(attempts_so_far)
