"""A stream skips its database query after a commit none of whose events its filters can pass
(cwl_crunch.services.events: `may_pass`, `Waiter`)."""

from __future__ import annotations

import asyncio

from cwl_crunch.services.events import BATCH, Waiter, may_pass

CONTAINER = {"object_uuid": "zzzzz-dz642-000000000000001", "object_kind": "arvados#container", "event_type": "update"}
REQUEST = {"object_uuid": "zzzzz-xvhdp-000000000000001", "object_kind": "arvados#containerRequest", "event_type": "create"}


def test_filters_on_uuid_kind_and_type_are_checked() -> None:
    assert may_pass([["object_uuid", "in", [CONTAINER["object_uuid"]]]], [REQUEST, CONTAINER])
    assert not may_pass([["object_uuid", "in", ["zzzzz-dz642-000000000000002"]]], [REQUEST, CONTAINER])
    assert may_pass([["object_kind", "=", "arvados#containerRequest"]], [REQUEST])
    assert not may_pass([["object_kind", "=", "arvados#containerRequest"]], [CONTAINER])
    # All filters must pass for the same event.
    assert not may_pass([["object_kind", "=", "arvados#container"], ["event_type", "=", "create"]], [REQUEST, CONTAINER])


def test_anything_else_is_left_to_the_query() -> None:
    assert may_pass([], [REQUEST])
    assert may_pass(None, [REQUEST])
    assert may_pass([["properties.new_state", "=", "Final"]], [CONTAINER])  # not known before the query
    assert may_pass([["object_uuid", "like", "zzzzz-dz642-%"]], [REQUEST])  # an operator not checked
    assert may_pass([["object_kind", "=", "arvados#container"], ["created_at", ">", "2026-01-01"]], [CONTAINER])
    assert not may_pass([], [])  # a commit always records events; nothing recorded, nothing to find


def test_a_waiter_hands_over_what_woke_it_once() -> None:
    async def scenario() -> None:
        waiter = Waiter(asyncio.get_running_loop())
        waiter.add([REQUEST])
        waiter.add([CONTAINER])
        assert waiter.woken.is_set()
        assert waiter.take() == [REQUEST, CONTAINER]
        assert not waiter.woken.is_set() and waiter.take() == []
        waiter.add([CONTAINER] * (BATCH + 1))  # too many to keep: the stream is told to query
        assert waiter.take() is None
        assert waiter.take() == []

    asyncio.run(scenario())
