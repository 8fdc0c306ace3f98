"""Recording a container's final state with its output and log collections (SPEC §7 step 7).

One update carries the state and both manifests; the server saves the collections in the same
transaction. A server that will not take manifests in an update (one older than this crunch-run,
or one refusing a manifest) answers 422 and changes nothing: the collections are then saved one by
one first, as they used to be, and a failure to save one has its own consequence.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..client import ApiError, Client
from .keep import Keep


def record(api: Client, keep: Keep, uuid: str, changes: dict[str, Any], manifests: dict[str, dict[str, Any]],
           log_not_saved: Callable[[Exception], None]) -> tuple[dict[str, Any], set[str]]:
    """The container as recorded with `changes` and the collections of `manifests` ("output",
    "log"), and which of those were saved. Raises ApiError when the state cannot be recorded."""
    try:
        updated = api.update("containers", uuid, {**changes, **{f"{name}_manifest": m for name, m in manifests.items()}})
        return updated, set(manifests)
    except ApiError as error:
        if error.status != 422 or not manifests:
            raise
        print(f"crunch-run {uuid}: the final state with its collections was refused ({error}); saving them first",
              file=sys.stderr)
    saved = set()
    for name, manifest in manifests.items():  # the output first
        try:
            changes[name] = keep.save(manifest, f"{name} for {uuid}")
            saved.add(name)
        except Exception as error:  # noqa: BLE001 - each collection's failure has its own consequence
            if name == "log":
                log_not_saved(error)
            else:
                _cancel_for_unsaved_output(api, uuid, changes, error)
    return api.update("containers", uuid, changes), saved


def _cancel_for_unsaved_output(api: Client, uuid: str, changes: dict[str, Any], error: Exception) -> None:
    """Output that cannot be saved turns Complete into Cancelled (SPEC §7), even once decided: the
    decision guards against signals, and no signal can bring the output back."""
    reason = f"cannot save the output: {error}"
    print(f"crunch-run {uuid}: {reason}", file=sys.stderr)
    if changes["state"] == "Complete":  # Cancelled carries no exit code: record it first
        try:
            api.update("containers", uuid, {"exit_code": changes.pop("exit_code")})
        except (ApiError, OSError) as failed:
            print(f"crunch-run {uuid}: {failed}", file=sys.stderr)
        changes["state"] = "Cancelled"
        changes["runtime_status"] = {"activity": None, "cause": "infrastructure", "error": reason}
