"""Which container events matter to a dispatcher: new work (with what queuing it needs, when
the event carries it), work back in the queue, a new priority, capacity freed. Most events are
none of these (status and log updates, locking, starting), and wake no round."""

from __future__ import annotations

from typing import Any

from ..domain.attributes import QUEUE_ENTRY

CONTAINER_KIND = "arvados#container"
# What a round needs to know of a queued container: what the queue listing selects.
QUEUE_FIELDS = ("uuid", *QUEUE_ENTRY)


def queue_entry(event: dict[str, Any]) -> dict[str, Any] | None:
    """A new Queued container as a queue listing would show it, if its create event says enough."""
    properties = event.get("properties") or {}
    entry = properties.get("queue_entry")
    if event.get("event_type") != "create" or properties.get("new_state") != "Queued" or not isinstance(entry, dict):
        return None
    if not all(field in entry for field in QUEUE_ENTRY) or not isinstance(entry["priority"], int):
        return None
    return {"uuid": event["object_uuid"], **{field: entry[field] for field in QUEUE_ENTRY}}


def changes_the_queue(event: dict[str, Any]) -> bool:
    """New work, work back in the queue (unlocked, retried) or a new priority."""
    properties = event.get("properties") or {}
    back_in_queue = properties.get("new_state") == "Queued" and properties.get("old_state") != "Queued"
    return event.get("event_type") == "create" or back_in_queue or "priority" in (properties.get("changed") or [])


def worth_a_round(event: dict[str, Any]) -> bool:
    """Whether a container event can change what a round would do: new work, capacity freed (a
    container finished or went back to the queue) or a new priority. Not the status and log
    updates, which are most events (and some are this dispatcher's own), nor locking or starting."""
    properties = event.get("properties") or {}
    if event.get("event_type") != "update":
        return True
    old, new = properties.get("old_state"), properties.get("new_state")
    frees_capacity = old != new and new in ("Queued", "Complete", "Cancelled")  # not Queued → Locked → Running
    return frees_capacity or "priority" in (properties.get("changed") or [])
