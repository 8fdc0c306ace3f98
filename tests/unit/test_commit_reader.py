"""CommitReader: when a stream may take its events from the commits that woke it, and when it must ask the database."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cwl_crunch.domain.principal import Principal
from cwl_crunch.services.events import CONTAINER_KIND, CommitReader
from cwl_crunch.store.repository import REQUEST_KIND, VISIBILITY

ALICE, BOB = "zzzzz-tpzed-000000000000001", "zzzzz-tpzed-000000000000002"
REQUEST, CONTAINER, OTHER = "zzzzz-xvhdp-000000000000001", "zzzzz-dz642-000000000000001", "zzzzz-dz642-000000000000002"
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def event(event_id: int, uuid: str, event_type: str = "update", **visibility: Any) -> dict[str, Any]:
    kind = REQUEST_KIND if "-xvhdp-" in uuid else CONTAINER_KIND
    recorded = {"id": event_id, "object_uuid": uuid, "object_kind": kind, "event_type": event_type,
                "properties": {"old_state": None, "new_state": "Queued"}, "created_at": WHEN}
    if visibility:
        recorded[VISIBILITY] = {"owner_uuid": ALICE, "requesting_container_uuid": None,
                                "container_uuid": CONTAINER, **visibility}
    return recorded


def ids(read: tuple[list[dict[str, Any]], int] | None) -> tuple[list[int], int] | None:
    return None if read is None else ([e["id"] for e in read[0]], read[1])


def alice(filters: object = None) -> CommitReader:
    return CommitReader(Principal(ALICE, "token"), [] if filters is None else filters)


def test_a_request_and_the_container_it_has_are_read_without_the_database():
    reader = alice()
    read = reader.read(4, [event(5, REQUEST, "create", owner_uuid=ALICE), event(6, CONTAINER, "create")])
    assert ids(read) == ([5, 6], 6)
    assert read is not None and read[0][1] == {
        "id": 6, "object_uuid": CONTAINER, "object_kind": CONTAINER_KIND, "event_type": "create",
        "properties": {"old_state": None, "new_state": "Queued"}, "created_at": "2026-01-02T03:04:05.678901Z"}
    assert ids(reader.read(6, [event(7, CONTAINER)])) == ([7], 7)


def test_another_users_request_is_skipped_and_its_container_undecided():
    bob = CommitReader(Principal(BOB, "token"), [])
    assert ids(bob.read(4, [event(5, REQUEST, "create", owner_uuid=ALICE)])) == ([], 5)
    assert bob.read(5, [event(6, CONTAINER, "create")]) is None  # a request of bob's may have had it


def test_a_gap_or_an_unknown_container_sends_the_stream_to_the_database():
    reader = alice()
    assert reader.read(4, [event(6, REQUEST, owner_uuid=ALICE)]) is None  # event 5 came from elsewhere
    assert reader.read(4, [event(5, OTHER)]) is None
    reader.saw([event(5, OTHER)])  # the database showed it: alice may see it from now on
    assert ids(reader.read(5, [event(6, OTHER)])) == ([6], 6)


def test_events_already_sent_are_ignored_and_late_callbacks_reordered():
    reader = alice()
    reader.saw([event(3, CONTAINER)])
    assert ids(reader.read(4, [event(6, CONTAINER), event(3, CONTAINER), event(5, CONTAINER)])) == ([5, 6], 6)


def test_a_container_token_sees_its_own_container_and_its_childrens_requests():
    runner = CommitReader(Principal(ALICE, "token", container_uuid=OTHER), [])
    child = event(2, REQUEST, "create", requesting_container_uuid=OTHER)
    unrelated = event(4, "zzzzz-xvhdp-000000000000009", "create", container_uuid="zzzzz-dz642-000000000000009")
    assert ids(runner.read(0, [event(1, OTHER), child, event(3, CONTAINER, "create"), unrelated])) == ([1, 2, 3], 4)


def test_filters_are_applied_before_visibility():
    watching = alice([["object_uuid", "=", REQUEST]])
    assert ids(watching.read(4, [event(5, OTHER), event(6, REQUEST, owner_uuid=ALICE)])) == ([6], 6)


def test_filters_it_cannot_check_exactly_always_ask_the_database():
    for filters in ([["properties.new_state", "=", "Final"]], [["object_uuid", "=", 5]],
                    [["object_kind", "in", [CONTAINER_KIND, None]]], [["id", ">", 3]]):
        assert alice(filters).read(4, [event(5, REQUEST, owner_uuid=ALICE)]) is None, filters


def test_a_deleted_request_makes_it_forget_the_containers_it_learnt():
    reader = alice()
    assert ids(reader.read(4, [event(5, REQUEST, "create", owner_uuid=ALICE), event(6, CONTAINER)])) == ([5, 6], 6)
    assert reader.read(6, [event(7, "zzzzz-xvhdp-000000000000002", "delete")]) is None
    assert reader.read(7, [event(8, CONTAINER)]) is None
