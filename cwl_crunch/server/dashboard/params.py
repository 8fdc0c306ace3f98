"""Query parameters of dashboard pages, read by hand so a bad value is a clear 4xx page, never a 500."""

from __future__ import annotations

from urllib.parse import urlencode

from ...domain.errors import Invalid
from ...services.logs import FILE_RE

MAX_PAGE_DIGITS = 9
DEFAULT_LOG_FILE = "stdout.txt"
SCOPES = ("top", "all")


def page_number(text: str | None, name: str = "page") -> int:
    """A page number from 1; absent means 1."""
    if text is None or text == "":
        return 1
    if not text.isascii() or not text.isdigit() or len(text) > MAX_PAGE_DIGITS or int(text) < 1:
        raise Invalid(f"{name}: must be a whole number from 1, not {text[:40]!r}")
    return int(text)


def scope(text: str | None) -> str:
    """`top`: requests made by people (the default); `all`: workflow steps too."""
    value = text or "top"
    if value not in SCOPES:
        raise Invalid(f"scope: must be one of {', '.join(SCOPES)}, not {value[:40]!r}")
    return value


def log_file(text: str | None) -> str:
    value = text or DEFAULT_LOG_FILE
    if not FILE_RE.match(value):
        raise Invalid(f"log: {value[:40]!r} is not a log file name")
    return value


def url(path: str, **params: object) -> str:
    """`path` with the parameters that are set (None left out, so URLs stay short)."""
    kept = {name: value for name, value in params.items() if value is not None and value != ""}
    return f"{path}?{urlencode(kept)}" if kept else path
