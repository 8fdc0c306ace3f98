"""HTTP byte ranges, for every endpoint that serves files (blobs, logs)."""

from __future__ import annotations

import re

from fastapi import HTTPException

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int, what: str = "the file") -> tuple[int, int] | None:
    """[start, end) asked for by a single-range `Range` header, or None to send it all.

    A header this cannot honour (another unit, several ranges, last < first) is ignored, as
    RFC 9110 §14.2 allows; a range starting at or beyond the end is a 416.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = (_number(text) for text in match.groups())
    if first is None:  # suffix: the last `last` bytes
        if not last or size == 0:  # -0, or nothing to send a part of
            raise _unsatisfiable(size, what)
        return max(size - last, 0), size
    if last is not None and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size, what)
    return first, size if last is None else min(last + 1, size)


def _number(digits: str) -> int | None:
    if not digits:
        return None
    return int(digits) if len(digits) <= 30 else 10**30  # no int() of a megabyte of digits


def _unsatisfiable(size: int, what: str) -> HTTPException:
    return HTTPException(416, f"range not satisfiable: {what} has {size} bytes", {"Content-Range": f"bytes */{size}"})


def start_of(header: str | None) -> int:
    """Where a `Range: bytes=N-…` header starts (0 without one): for streams whose size is open."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    return (_number(match.group(1)) or 0) if match else 0
