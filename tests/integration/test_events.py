"""The event stream (SPEC §11): ordered, prompt, resumable, filtered, confined to what the caller may see."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cwl_crunch.services import events
from cwl_crunch.services.lifecycle import EVENT_MANIFEST_ENTRIES
from tests.support.flows import collection, commit, complete, ok, run
from tests.support.service import RunningService, request_body, start_service
from tests.support.sse import EventStream, Received

# The service under test polls for events only once a minute, so an event that arrives within
# this many seconds was delivered because the commit woke the stream.
PROMPT = 0.5


@pytest.fixture
def service(store) -> Iterator[RunningService]:
    running = start_service(store, event_poll_seconds=60)
    yield running
    running.stop()


@pytest.fixture
def open_stream(service: RunningService) -> Iterator[Callable[..., EventStream]]:
    streams: list[EventStream] = []

    def connect(token: str, **params: object) -> EventStream:
        headers = params.pop("headers", None)
        if "filters" in params:
            params["filters"] = json.dumps(params["filters"])
        stream = EventStream(service.url + "/arvados/v1", token, params=params, headers=headers)  # type: ignore[arg-type]
        streams.append(stream)
        return stream

    yield connect
    for stream in streams:
        stream.disconnect()


def state_of(event: Received) -> tuple[str, str]:
    return event.data["object_uuid"], event.data["properties"]["new_state"]


def state_changes(events: list[Received]) -> list[tuple[str, str]]:
    """(object_uuid, new_state) of the events that created an object or changed its state."""
    return [
        state_of(e)
        for e in events
        if e.data["event_type"] == "create" or e.data["properties"]["old_state"] != e.data["properties"]["new_state"]
    ]


def is_state(uuid: str, state: str) -> Callable[[Received], bool]:
    return lambda event: state_of(event) == (uuid, state)



def run_to_completion(admin: httpx.Client, container_uuid: str) -> None:
    ok(admin.post(f"/containers/{container_uuid}/lock"))
    ok(admin.put(f"/containers/{container_uuid}", json={"state": "Running"}))
    ok(admin.put(f"/containers/{container_uuid}", json={"state": "Complete", "exit_code": 0}))


def test_state_changes_arrive_in_order_and_promptly(service, open_stream):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    stream = open_stream(token)
    seen: list[Received] = []

    def step(action: Callable[[], object], until: Callable[[], Callable[[Received], bool]]) -> None:
        started = time.monotonic()
        action()
        events = stream.until(until(), timeout=5)
        assert events[-1].at - started < PROMPT, f"event took {events[-1].at - started:.2f} s"
        seen.extend(events)

    uuids: dict[str, str] = {}
    step(lambda: uuids.update(commit(alice)), lambda: is_state(uuids["container_uuid"], "Queued"))
    cr, c = uuids["uuid"], uuids["container_uuid"]
    step(lambda: ok(admin.post(f"/containers/{c}/lock")), lambda: is_state(c, "Locked"))
    step(lambda: ok(admin.put(f"/containers/{c}", json={"state": "Running"})), lambda: is_state(c, "Running"))
    step(lambda: ok(admin.put(f"/containers/{c}", json={"state": "Complete", "exit_code": 0})),
         lambda: is_state(cr, "Final"))

    assert state_changes(seen) == [
        (cr, "Committed"),
        (c, "Queued"),
        (c, "Locked"),
        (c, "Running"),
        (c, "Complete"),
        (cr, "Final"),
    ]
    ids = [e.id for e in seen]
    assert ids == sorted(set(ids)), "event ids must be unique and increasing"
    for event in seen:
        assert event.data["id"] == event.id
        assert event.event == event.data["event_type"]
    kinds = {e.data["object_uuid"]: e.data["object_kind"] for e in seen}
    assert kinds == {cr: "arvados#containerRequest", c: "arvados#container"}


def test_without_since_the_stream_starts_from_now(service, open_stream):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    before = commit(alice, command=["echo", "before"])
    stream = open_stream(token)
    after = commit(alice, command=["echo", "after"])
    ok(admin.post(f"/containers/{before['container_uuid']}/lock"))

    events = stream.until(is_state(before["container_uuid"], "Locked"))
    assert state_changes(events) == [
        (after["uuid"], "Committed"),
        (after["container_uuid"], "Queued"),
        (before["container_uuid"], "Locked"),
    ]


@pytest.mark.parametrize("resume_with", ["since", "Last-Event-ID"])
def test_reconnecting_replays_exactly_what_was_missed(service, open_stream, resume_with):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    stream = open_stream(token)
    request = commit(alice)
    cr, c = request["uuid"], request["container_uuid"]
    newest = ok(alice.get("/events/batch", params={"since": 0}))["last_id"]
    last_seen = stream.until(lambda e: e.id == newest)[-1].id
    stream.disconnect()

    run_to_completion(admin, c)  # missed while disconnected
    missed = ok(alice.get("/events/batch", params={"since": last_seen}))["items"]

    if resume_with == "since":
        resumed = open_stream(token, since=last_seen)
    else:
        resumed = open_stream(token, headers={"Last-Event-ID": str(last_seen)})
    replayed = resumed.until(is_state(cr, "Final"))
    assert [e.data for e in replayed] == missed
    assert replayed[0].id > last_seen
    assert state_changes(replayed) == [(c, "Locked"), (c, "Running"), (c, "Complete"), (cr, "Final")]

    # Nothing else was pending: the next event is a new, live one.
    later = commit(alice, command=["echo", "later"])
    assert state_of(resumed.next()) == (later["uuid"], "Committed")


def test_last_event_id_wins_over_the_since_of_the_original_url(service, open_stream):
    """A browser's EventSource reconnects to the same URL (same `since`) adding Last-Event-ID."""
    token = service.token("alice")
    alice = service.client(token)
    commit(alice, command=["echo", "1"])
    mark = ok(alice.get("/events/batch"))["last_id"]
    second = commit(alice, command=["echo", "2"])

    stream = open_stream(token, since=0, headers={"Last-Event-ID": str(mark)})
    first_replayed = stream.next()
    assert first_replayed.id > mark
    assert state_of(first_replayed) == (second["uuid"], "Committed")


def test_filters_limit_the_stream(service, open_stream):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    wanted = commit(alice, command=["echo", "wanted"])
    other = commit(alice, command=["echo", "other"])
    uuids = [wanted["uuid"], wanted["container_uuid"]]
    stream = open_stream(token, since=0, filters=[["object_uuid", "in", uuids]])

    ok(admin.post(f"/containers/{other['container_uuid']}/lock"))
    ok(admin.post(f"/containers/{wanted['container_uuid']}/lock"))
    events = stream.until(is_state(wanted["container_uuid"], "Locked"))

    assert {e.data["object_uuid"] for e in events} == set(uuids)
    assert state_changes(events) == [
        (wanted["uuid"], "Committed"),
        (wanted["container_uuid"], "Queued"),
        (wanted["container_uuid"], "Locked"),
    ]
    batch = ok(alice.get("/events/batch", params={"filters": json.dumps([["object_uuid", "in", uuids]])}))
    assert [e.data for e in events] == batch["items"]


def test_filters_on_kind(service, open_stream):
    token = service.token("alice")
    alice = service.client(token)
    stream = open_stream(token, filters=[["object_kind", "=", "arvados#container"]])
    first = commit(alice, command=["echo", "1"])
    second = commit(alice, command=["echo", "2"])
    events = stream.until(is_state(second["container_uuid"], "Queued"))
    assert {e.data["object_kind"] for e in events} == {"arvados#container"}
    assert state_changes(events) == [(first["container_uuid"], "Queued"), (second["container_uuid"], "Queued")]


def test_filters_on_a_property(service, open_stream):
    """E.g. a runner waiting only for its requests to become Final."""
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    stream = open_stream(token, filters=[["properties.new_state", "=", "Final"]])
    first = commit(alice, command=["echo", "1"])
    second = commit(alice, command=["echo", "2"])
    run_to_completion(admin, second["container_uuid"])
    ok(alice.put(f"/container_requests/{first['uuid']}", json={"priority": 0}))
    events = stream.until(is_state(first["uuid"], "Final"))
    assert [state_of(e) for e in events] == [(second["uuid"], "Final"), (first["uuid"], "Final")]


def test_users_do_not_see_each_others_events(service, open_stream):
    alice_token, bob_token = service.token("alice"), service.token("bob")
    alice, bob = service.client(alice_token), service.client(bob_token)
    alice_stream = open_stream(alice_token, since=0)
    bob_stream = open_stream(bob_token, since=0)
    admin_stream = open_stream(service.admin_token, since=0)

    bobs = commit(bob, command=["echo", "bob"])
    alices = commit(alice, command=["echo", "alice"])

    alice_saw = alice_stream.until(is_state(alices["container_uuid"], "Queued"))
    assert {e.data["object_uuid"] for e in alice_saw} == {alices["uuid"], alices["container_uuid"]}
    bob_sentinel = commit(bob, command=["echo", "bob again"])
    bob_saw = bob_stream.until(is_state(bob_sentinel["container_uuid"], "Queued"))
    assert {e.data["object_uuid"] for e in bob_saw} == {
        bobs["uuid"], bobs["container_uuid"], bob_sentinel["uuid"], bob_sentinel["container_uuid"]
    }
    admin_saw = admin_stream.until(is_state(bob_sentinel["container_uuid"], "Queued"))
    assert {alices["uuid"], bobs["uuid"]} <= {e.data["object_uuid"] for e in admin_saw}

    alice_batch = ok(alice.get("/events/batch"))["items"]
    assert {e["object_uuid"] for e in alice_batch} == {alices["uuid"], alices["container_uuid"]}


def test_a_container_tokens_stream_ends_with_its_container(service, open_stream):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    request = commit(alice)
    c = request["container_uuid"]
    auth = ok(admin.post(f"/containers/{c}/lock"))["auth"]
    ok(admin.put(f"/containers/{c}", json={"state": "Running"}))
    stream = open_stream(auth)

    ok(admin.put(f"/containers/{c}", json={"state": "Complete", "exit_code": 0}))
    assert (c, "Complete") in [state_of(e) for e in stream.until(is_state(c, "Complete"))]
    assert stream.closed_by_server(), "the stream outlived the container token"
    with httpx.Client(base_url=service.url + "/arvados/v1", timeout=5) as client:
        assert client.get("/events", headers={"Authorization": f"Bearer {auth}"}).status_code == 401


def test_batch_returns_the_same_events_as_the_stream(service, open_stream):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    request = commit(alice)
    run_to_completion(admin, request["container_uuid"])

    stream = open_stream(token, since=0)
    streamed = stream.until(is_state(request["uuid"], "Final"))
    batch = ok(alice.get("/events/batch", params={"since": 0}))
    assert batch["items"] == [e.data for e in streamed]
    assert batch["last_id"] == streamed[-1].id

    halfway = streamed[2].id
    tail = ok(alice.get("/events/batch", params={"since": halfway}))
    assert tail["items"] == [e.data for e in streamed[3:]]
    empty = ok(alice.get("/events/batch", params={"since": batch["last_id"]}))
    assert empty == {"items": [], "last_id": batch["last_id"]}


BAD_FILTERS = [
    "not json",
    '{"object_uuid": "x"}',
    '[["no_such_column", "=", "x"]]',
    '[["object_uuid", "~", "x"]]',
    '[["object_uuid", "="]]',
    '[["id", "=", "seven"]]',
    '[["object_uuid", "in", "not a list"]]',
]


@pytest.mark.parametrize("endpoint", ["/events", "/events/batch"])
@pytest.mark.parametrize("filters", BAD_FILTERS)
def test_bad_filters_are_refused_before_streaming(service, endpoint, filters):
    client = httpx.Client(base_url=service.url + "/arvados/v1", timeout=5,
                          headers={"Authorization": f"Bearer {service.token('alice')}"})
    with client:
        response = client.get(endpoint, params={"filters": filters})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    errors = response.json()["errors"]
    assert errors and all(isinstance(e, str) and e for e in errors)


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"since": "-1"}, {}), ({"since": "abc"}, {}), ({}, {"Last-Event-ID": "abc"})],
    ids=["negative-since", "text-since", "text-last-event-id"],
)
def test_bad_resume_points_are_refused(service, params, headers):
    client = httpx.Client(base_url=service.url + "/arvados/v1", timeout=5,
                          headers={"Authorization": f"Bearer {service.token('alice')}", **headers})
    with client:
        response = client.get("/events", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["errors"]


def test_stream_needs_a_token(service):
    with httpx.Client(base_url=service.url + "/arvados/v1", timeout=5) as client:
        response = client.get("/events")
        assert response.status_code == 401
        assert response.json()["errors"]
        response = client.get("/events", headers={"Authorization": "Bearer not-a-token"})
        assert response.status_code == 401


def test_an_event_committed_after_a_newer_one_is_not_skipped(service, open_stream, store):
    """Concurrent writers may commit out of order; the stream must not jump past the slower one."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite has a single writer, so events always commit in id order")
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    slow = commit(alice, command=["echo", "slow"])
    fast = commit(alice, command=["echo", "fast"])
    stream = open_stream(token)

    with store.write() as tx:  # a slow transaction that records its event first…
        tx.add_event(slow["uuid"], "update", {"old_state": "Committed", "new_state": "Committed"}, service.clock())
        with ThreadPoolExecutor(1) as pool:  # …while a quick one commits meanwhile
            pool.submit(lambda: ok(admin.post(f"/containers/{fast['container_uuid']}/lock"))).result(10)
        stream.until(is_state(fast["container_uuid"], "Locked"))

    sentinel = commit(alice, command=["echo", "sentinel"])
    late = stream.until(is_state(sentinel["uuid"], "Committed"))
    assert slow["uuid"] in [e.data["object_uuid"] for e in late], "the slow transaction's event was skipped"


@pytest.mark.parametrize("files", [1, EVENT_MANIFEST_ENTRIES + 1])
def test_a_complete_event_carries_a_small_outputs_manifest_and_digests(service, files):
    admin = service.admin()
    request = commit(service.client(service.token("alice")))
    uuid = request["container_uuid"]
    run(admin, uuid)
    manifest = {f"out{n}.txt": {"blob": f"{n:064x}", "size": n} for n in range(files)}
    digests = {name: "a" * 40 for name in manifest}
    output = collection(admin, manifest)
    ok(admin.put(f"/containers/{uuid}", json={"state": "Complete", "exit_code": 0, "output": output,
                                               "output_properties": {"sha1": digests}}))

    (final,) = [e for e in ok(admin.get("/events/batch", params={"since": 0}))["items"]
                if e["object_uuid"] == uuid and e["properties"].get("new_state") == "Complete"]
    properties = final["properties"]
    assert (properties["exit_code"], properties["output"]) == (0, output)
    if files <= EVENT_MANIFEST_ENTRIES:
        assert (properties["output_manifest"], properties["output_sha1"]) == (manifest, digests)
    else:  # too big to travel with every event: a reader asks for the collection
        assert "output_manifest" not in properties and "output_sha1" not in properties


@pytest.fixture
def queries(monkeypatch) -> dict[str, int]:
    """How many times the database was asked for events, by who asked and with which filters
    (`stream_key`). Opening a stream asks twice (to check the filters, then to start), and
    `/events/batch` once."""
    asked: dict[str, int] = {}
    query = events.read_events

    def counted(ctx, principal, since, filters):  # type: ignore[no-untyped-def]
        key = stream_key(principal.user_uuid, principal.container_uuid, filters)
        asked[key] = asked.get(key, 0) + 1
        return query(ctx, principal, since, filters)

    monkeypatch.setattr(events, "read_events", counted)
    return asked


def stream_key(user_uuid: str, container_uuid: str | None, filters: object) -> str:
    return json.dumps([user_uuid, container_uuid, filters])


def test_streams_read_commits_without_querying_and_see_what_the_database_shows(service, open_stream, queries):
    """A woken stream takes its events from the commits that woke it when that gives what the
    database would: for admins, and for users and container tokens when the events are about
    their requests and the containers those have had."""
    alice_token, bob_token = service.token("alice"), service.token("bob")
    alice, bob, admin = service.client(alice_token), service.client(bob_token), service.admin()
    parent = commit(alice, command=["echo", "parent"])
    runner_token = ok(admin.post(f"/containers/{parent['container_uuid']}/lock"))["auth"]
    ok(admin.put(f"/containers/{parent['container_uuid']}", json={"state": "Running"}))
    first = commit(alice, command=["echo", "first"])
    watched = [["object_uuid", "in", [first["uuid"], first["container_uuid"]]]]
    users = {token: ok(service.client(token).get("/users/current"))["uuid"]
             for token in (service.admin_token, alice_token, bob_token)}
    opened = {  # name: (token, filters, the container the token is confined to)
        "admin": (service.admin_token, [], None),
        "containers": (service.admin_token, [["object_kind", "=", "arvados#container"]], None),
        "alice": (alice_token, [], None),
        "watching": (alice_token, watched, None),
        "runner": (runner_token, [], parent["container_uuid"]),
        "bob": (bob_token, [], None),
    }
    keys = {name: stream_key(users.get(token, users[alice_token]), confined, filters)
            for name, (token, filters, confined) in opened.items()}
    streams = {name: open_stream(token, since=0, filters=filters) for name, (token, filters, _) in opened.items()}
    deadline = time.monotonic() + 10
    while any(queries.get(key, 0) < 2 for key in keys.values()):
        assert time.monotonic() < deadline, f"the streams did not make their first queries: {queries}"
        time.sleep(0.01)
    before = dict(queries)

    # What a runner does: child requests, each run to the end.
    runner = service.client(runner_token)
    for number in range(3):
        complete(admin, commit(runner, command=["echo", f"child {number}"])["container_uuid"])
    runner_asked = queries[keys["runner"]] - before[keys["runner"]]
    # Everything else: a request run to the end, a cancelled one, a deleted one, another user's.
    complete(admin, first["container_uuid"])
    ok(alice.put(f"/container_requests/{commit(alice, command=['echo', 'cancelled'])['uuid']}", json={"priority": 0}))
    draft = ok(alice.post("/container_requests", json=request_body(command=["echo", "draft"], state="Uncommitted")))
    ok(alice.delete(f"/container_requests/{draft['uuid']}"))
    complete(admin, commit(bob, command=["echo", "bob"])["container_uuid"])

    for name, (token, filters, _) in opened.items():
        truth = ok(service.client(token).get("/events/batch", params={"since": 0, "filters": json.dumps(filters)}))
        before[keys[name]] += 1  # the batch's own query
        received: list[Received] = []
        deadline = time.monotonic() + 5
        while len(received) < len(truth["items"]) and time.monotonic() < deadline:
            received += streams[name].pending()
            time.sleep(0.01)
        assert truth["items"], f"{name} saw nothing: the comparison would prove nothing"
        # A deleted request's events: alice saw its creation live, but the database no longer shows
        # it to her. They are compared for admins only.
        shown = [e.data for e in received if name in ("admin", "containers") or e.data["object_uuid"] != draft["uuid"]]
        assert shown == truth["items"], f"{name}'s stream differs from the database"
        if name == "admin":
            assert (draft["uuid"], "delete") in [(e["object_uuid"], e["event_type"]) for e in shown]
    bob_saw = {e["object_uuid"] for e in ok(bob.get("/events/batch"))["items"]}
    before[keys["bob"]] += 1
    assert bob_saw.isdisjoint({parent["uuid"], first["uuid"], draft["uuid"]})

    # Admins, whatever their filters, and a user watching its own objects never needed the database…
    for name in ("admin", "containers", "watching"):
        assert queries[keys[name]] == before[keys[name]], f"{name}'s stream queried"
    # …nor did the runner's stream while only its children moved.
    assert runner_asked == 0
    # Bob's stream cannot tell from an event whether a request of his ever had alice's container.
    assert queries[keys["bob"]] > before[keys["bob"]]
