"""How values read on a page: ages, costs, sizes, status colours. Pure, so tests check them by value."""

from __future__ import annotations

from datetime import datetime

from ...services.records import format_time

_UNITS = ((86400, "day"), (3600, "h"), (60, "min"), (1, "s"))


def age(then: datetime | None, now: datetime) -> str:
    """`5 min ago`: the largest whole unit, so a list reads at a glance (the exact time is in a tooltip)."""
    if then is None:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 5:
        return "just now"
    unit_seconds, unit = next((s, u) for s, u in _UNITS if seconds >= s)
    count = seconds // unit_seconds
    plural = "s" if unit == "day" and count != 1 else ""
    return f"{count} {unit}{plural} ago"


def cost(value: float | None) -> str:
    """Dollars to the cent; a dash when nothing was recorded (local containers cost nothing)."""
    return f"${value:,.2f}" if value else "—"


def size(value: int) -> str:
    """Bytes in the largest binary unit that keeps the number below 1024."""
    if value < 1024:
        return f"{value} B"
    amount = value / 1024
    for unit in ("KiB", "MiB"):
        if amount < 1024:
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def slug(status: str) -> str:
    """The CSS class suffix of a status label: `On hold` → `on-hold`."""
    return status.lower().replace(" ", "-")


def iso(value: datetime | None) -> str:
    """RFC 3339 UTC, as the API writes times."""
    return format_time(value) or ""
