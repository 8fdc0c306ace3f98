"""Public views of stored rows: secrets and internals removed, times as RFC 3339 UTC."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..domain.errors import Invalid
from ..domain.principal import Principal
from ..domain.status import derived_status

_NEVER_SHOWN = frozenset({"secret_mounts", "runtime_token", "reuse_digests", "command_digest", "has_error", "secret_hash"})
_REQUEST_INTERNAL = frozenset({"held"})


def format_time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _public(row: Mapping[str, Any], hidden: Iterable[str]) -> dict[str, Any]:
    hidden = frozenset(hidden)
    out = {}
    for key, value in row.items():
        if key in hidden:
            continue
        out[key] = format_time(value) if isinstance(value, datetime) else value
    return out


def container_view(row: Mapping[str, Any], principal: Principal) -> dict[str, Any]:
    """A container as clients see it. Its secret mounts never show, but whether it has any does
    (`has_secret_mounts`): crunch-run asks for them only then, one call fewer per container."""
    hidden = _NEVER_SHOWN if principal.is_admin else _NEVER_SHOWN | {"auth"}
    view = _public(row, hidden)
    view["has_secret_mounts"] = bool(row.get("secret_mounts"))
    return view


def request_view(row: Mapping[str, Any], container: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A request as clients see it, with `on_hold` and the derived user-facing `status`."""
    view = _public(row, _NEVER_SHOWN | _REQUEST_INTERNAL)
    view["on_hold"] = bool(row.get("held"))
    view["status"] = derived_status(row, container)
    return view


def plain_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return _public(row, _NEVER_SHOWN)


def select_fields(view: dict[str, Any], fields: list[str] | None, known: Iterable[str]) -> dict[str, Any]:
    if fields is None:
        return view
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise Invalid(*(f"select: unknown attribute {name!r}" for name in unknown))
    return {name: view[name] for name in fields if name in view}
