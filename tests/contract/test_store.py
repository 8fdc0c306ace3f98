"""The store's contract, run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from cwl_crunch.domain.errors import Conflict
from cwl_crunch.services.context import Context
from cwl_crunch.services.lifecycle import choose_container
from cwl_crunch.settings import Settings
from cwl_crunch.store.schema import containers

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def _request(**overrides):
    request = {
        "uuid": "zzzzz-xvhdp-000000000000001",
        "command": ["echo", "x"],
        "cwd": "/",
        "output_path": "/out",
        "mounts": {"/out": {"kind": "tmp"}},
        "use_existing": True,
        "priority": 1,
        "held": False,
        "requesting_container_uuid": None,
        "created_at": NOW,
    }
    request.update(overrides)
    return request


def _new_container(store, **overrides):
    ctx = Context(store, Settings())
    with store.write() as tx:
        container, new = choose_container(tx, ctx, _request(**overrides), NOW)
        assert new
        return tx.insert_container(container, NOW)


def test_inserted_rows_read_back_equal(store):
    created = _new_container(store)
    with store.read() as tx:
        stored = tx.get_container(created["uuid"])
    assert {k: stored[k] for k in created} == created
    assert stored["created_at"].tzinfo is not None  # times come back as aware UTC


def test_guarded_update_refuses_a_stale_state(store):
    created = _new_container(store)
    with store.write() as tx:
        tx.update_container(created, {"state": "Cancelled"}, NOW)
    with pytest.raises(Conflict), store.write() as tx:
        tx.update_container(created, {"state": "Locked"}, NOW)  # `created` still says Queued
    with store.read() as tx:
        assert tx.get_container(created["uuid"])["state"] == "Cancelled"


def test_updates_record_events_with_old_and_new_state(store):
    created = _new_container(store)
    with store.write() as tx:
        start = 0
        tx.update_container(created, {"state": "Cancelled", "priority": 0}, NOW)
    with store.read() as tx:
        events = tx.events_after(start, [], 100)
    assert [(e["event_type"], e["properties"]["new_state"]) for e in events] == [
        ("create", "Queued"),
        ("update", "Cancelled"),
    ]
    assert events[0]["id"] < events[1]["id"]


def test_a_write_that_changes_nothing_records_nothing(store):
    created = _new_container(store)
    with store.write() as tx:
        tx.update_container(created, {"state": "Queued"}, NOW)
        assert tx.last_event_id() == 1


def test_only_writes_that_record_events_wake_event_listeners_and_they_learn_which(store):
    woken = []
    store.on_events(woken.append)
    created = _new_container(store)  # its "create" event
    assert [[(e["object_uuid"], e["object_kind"], e["event_type"]) for e in recorded] for recorded in woken] == [
        [(created["uuid"], "arvados#container", "create")]]
    with store.write() as tx:
        tx.update_container(created, {"state": "Queued"}, NOW)  # no change: no event
    assert len(woken) == 1
    with store.write() as tx:
        tx.update_container(created, {"state": "Cancelled", "priority": 0}, NOW)
    assert len(woken) == 2 and [e["event_type"] for e in woken[1]] == ["update"]


def test_exists_answers_without_fetching_rows(store):
    created = _new_container(store)
    with store.read() as tx:
        assert tx.exists(containers, [containers.c.uuid == created["uuid"]])
        assert not tx.exists(containers, [containers.c.uuid == created["uuid"], containers.c.state == "Running"])


def test_a_collection_is_looked_up_by_content_once_per_transaction(store):
    def collection(n: int, pdh: str) -> dict:
        return {"uuid": f"zzzzz-4zz18-{n:015d}", "owner_uuid": "zzzzz-tpzed-000000000000001", "name": "c",
                "portable_data_hash": pdh, "manifest": {}, "properties": {}, "created_at": NOW + timedelta(seconds=n),
                "modified_at": NOW, "trash_at": None}

    statements: list[str] = []

    def note(_conn, _cursor, statement, *_):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        with store.write() as tx:
            assert tx.collection_by_pdh("a+1") is None
            tx.insert_collection(collection(2, "a+1"))
            assert tx.collection_by_pdh("a+1")["uuid"] == collection(2, "a+1")["uuid"]  # "none" gave way to it
            tx.insert_collection(collection(3, "a+1"))  # a newer copy: the oldest stays the answer
            assert tx.collection_by_pdh("a+1")["uuid"] == collection(2, "a+1")["uuid"]
            assert sum("FROM collections" in s for s in statements) == 1
        with store.write() as tx:  # inserted before being asked: that copy answers, unasked (the same content)
            tx.insert_collection(collection(4, "a+1"))
            assert tx.collection_by_pdh("a+1")["uuid"] == collection(4, "a+1")["uuid"]
            assert sum("FROM collections" in s for s in statements) == 1
        with store.read() as tx:  # asked first: the oldest
            assert tx.collection_by_pdh("a+1")["uuid"] == collection(2, "a+1")["uuid"]
    finally:
        event.remove(store.engine, "before_cursor_execute", note)


def test_reuse_candidates_per_tier(store):
    queued = _new_container(store, use_existing=False)
    locked = _new_container(store, use_existing=False)
    with store.write() as tx:
        tx.update_container(locked, {"state": "Locked"}, NOW)
        key = queued["reuse_key"]
        assert tx.first_reuse_candidate(key, ["locked"])["uuid"] == locked["uuid"]
        assert tx.first_reuse_candidate(key, ["queued"])["uuid"] == queued["uuid"]
        assert tx.first_reuse_candidate(key, ["running"]) is None
        assert tx.first_reuse_candidate(key, ["complete"]) is None
        # The first tier with a candidate wins, in the order asked for.
        assert tx.first_reuse_candidate(key, ["running", "queued", "locked"])["uuid"] == queued["uuid"]


def test_json_columns_round_trip_nested_values(store):
    created = _new_container(store, environment={"ü": "ñ"}, mounts={"/out": {"kind": "json", "content": {"a": [1, 2.5, None, True]}}})
    with store.read() as tx:
        stored = tx.get_container(created["uuid"])
    assert stored["environment"] == {"ü": "ñ"}
    assert stored["mounts"]["/out"]["content"] == {"a": [1, 2.5, None, True]}


def test_list_filters_orders_and_counts(store):
    made = [_new_container(store, use_existing=False, command=["echo", str(i)]) for i in range(5)]
    with store.read() as tx:
        rows, available = tx.list(containers, [containers.c.state == "Queued"], [containers.c.uuid], 2, 1)
    assert available == 5
    assert [r["uuid"] for r in rows] == sorted(c["uuid"] for c in made)[1:3]


def test_events_older_than_retention_are_deleted(store):
    _new_container(store)
    with store.write() as tx:
        assert tx.delete_events_before(NOW + timedelta(seconds=1)) == 1
        assert tx.events_after(0, [], 10) == []


def test_concurrent_writers_all_commit(store):
    """Writers in many threads queue up (SQLite) or run side by side (PostgreSQL); none is lost."""
    errors = []

    def one(i: int) -> None:
        try:
            _new_container(store, use_existing=False, command=["echo", str(i)])
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.read() as tx:
        assert tx.list(containers, [], [containers.c.uuid], 100, 0)[1] == 16
