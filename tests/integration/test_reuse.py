"""Container reuse (SPEC §5): preference tiers, exclusions, key normalisation, explanations."""

from __future__ import annotations

from tests.support.flows import commit, complete, lock, ok, run


def _fresh(client, **overrides):
    """A request that does not reuse: a separate container with the same reuse key."""
    return commit(client, use_existing=False, **overrides)["container_uuid"]


def test_complete_with_exit_0_is_preferred_earliest_finished_first(service):
    alice, admin = service.client(service.token()), service.admin()
    first, second, running = _fresh(alice), _fresh(alice), _fresh(alice)
    run(admin, running)
    complete(admin, first)
    service.clock.advance(5)
    complete(admin, second)
    request = commit(alice)
    assert request["container_uuid"] == first
    assert request["state"] == "Final"  # satisfied at once by finished work
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "Reused"


def test_running_without_error_is_next_highest_progress_first(service):
    alice, admin = service.client(service.token()), service.admin()
    slow, fast, queued = _fresh(alice), _fresh(alice), _fresh(alice)
    for uuid, progress in ((slow, 0.2), (fast, 0.7)):
        run(admin, uuid)
        ok(admin.put(f"/containers/{uuid}", json={"progress": progress}))
    assert commit(alice)["container_uuid"] == fast
    assert queued  # a Queued candidate existed and lost to the Running ones


def test_running_container_with_an_error_is_never_reused(service):
    alice, admin = service.client(service.token()), service.admin()
    doomed = _fresh(alice)
    run(admin, doomed)
    ok(admin.put(f"/containers/{doomed}", json={"runtime_status": {"error": "step x failed"}}))
    reused = commit(alice)["container_uuid"]
    assert reused != doomed
    assert ok(admin.get(f"/containers/{reused}"))["state"] == "Queued"
    # Once the error is withdrawn (null deletes it) the running container is a candidate again.
    ok(admin.put(f"/containers/{doomed}", json={"runtime_status": {"error": None}}))
    assert commit(alice, name="again", environment={"X": "1"})["container_uuid"] not in (doomed, reused)
    assert commit(alice, name="same work")["container_uuid"] == doomed


def test_locked_is_preferred_to_queued(service):
    alice, admin = service.client(service.token()), service.admin()
    queued, locked = _fresh(alice), _fresh(alice)
    lock(admin, locked)
    assert commit(alice)["container_uuid"] == locked
    assert queued


def test_queued_is_reused_before_creating_a_new_one(service):
    alice = service.client(service.token())
    queued = _fresh(alice)
    assert commit(alice)["container_uuid"] == queued


def test_failed_and_cancelled_containers_are_never_reused(service):
    alice, admin = service.client(service.token()), service.admin()
    failed = _fresh(alice)
    complete(admin, failed, exit_code=1)
    cancelled = _fresh(alice)
    ok(admin.put(f"/containers/{cancelled}", json={"state": "Cancelled"}))
    new = commit(alice)["container_uuid"]
    assert new not in (failed, cancelled)
    assert ok(admin.get(f"/containers/{new}"))["state"] == "Queued"


def test_complete_whose_output_collection_is_gone_is_not_reused(service):
    alice, admin = service.client(service.token()), service.admin()
    done = _fresh(alice)
    run(admin, done)
    missing_output = "c" * 64 + "+10"
    log = ok(admin.post("/collections", json={"manifest": {"x": {"blob": "d" * 64, "size": 1}}}))["portable_data_hash"]
    ok(admin.put(f"/containers/{done}", json={"state": "Complete", "exit_code": 0, "log": log, "output": missing_output}))
    assert commit(alice)["container_uuid"] != done


def test_use_existing_false_always_creates(service):
    alice = service.client(service.token())
    assert _fresh(alice) != _fresh(alice)


def test_key_normalisation_ignores_map_key_order_and_non_key_fields(service):
    alice = service.client(service.token())
    env_a = {"A": "1", "B": "2"}
    env_b = {"B": "2", "A": "1"}
    mounts_a = {"/var/spool/cwl": {"kind": "tmp", "capacity": 1 << 20}, "/in": {"kind": "json", "content": {"x": 1, "y": [1, 2]}}}
    mounts_b = {"/in": {"content": {"y": [1, 2], "x": 1}, "kind": "json"}, "/var/spool/cwl": {"capacity": 1 << 20, "kind": "tmp"}}
    first = commit(alice, environment=env_a, mounts=mounts_a, name="one", priority=10)
    second = commit(alice, environment=env_b, mounts=mounts_b, name="two", priority=900,
                    properties={"p": 1}, scheduling_parameters={"partitions": ["x"]})
    assert first["container_uuid"] == second["container_uuid"]
    # ...but a different value is different work.
    third = commit(alice, environment={"A": "1", "B": "3"}, mounts=mounts_a)
    assert third["container_uuid"] != first["container_uuid"]


def test_reuse_crosses_users(service):
    alice, bob = service.client(service.token("alice")), service.client(service.token("bob"))
    assert commit(alice)["container_uuid"] == commit(bob)["container_uuid"]


def test_explain_reuse_names_the_differing_fields(service):
    alice = service.client(service.token())
    existing = commit(alice, runtime_constraints={"vcpus": 1, "ram": 4294967296})
    question = {"command": ["echo", "hello world"], "cwd": "/var/spool/cwl", "output_path": "/var/spool/cwl",
                "mounts": {"/var/spool/cwl": {"kind": "tmp", "capacity": 1 << 20}},
                "runtime_constraints": {"vcpus": 1, "ram": 8589934592}}
    answer = ok(alice.post("/container_requests/explain_reuse", json=question))
    assert answer["container_uuid"] is None
    assert answer["decision"].startswith("would create a new container")
    nearest = answer["nearest"][0]
    assert nearest["uuid"] == existing["container_uuid"]
    assert nearest["differences"] == ["runtime_constraints.ram: 8589934592 != 4294967296"]


def test_explain_reuse_of_a_committed_request_says_which_container_was_chosen(service):
    alice = service.client(service.token())
    request = commit(alice)
    answer = ok(alice.get(f"/container_requests/{request['uuid']}/reuse"))
    assert answer["container_uuid"] == request["container_uuid"]
    assert answer["decision"].startswith(f"was use container {request['container_uuid']}")


def test_explain_reuse_says_why_identical_work_was_skipped(service):
    alice, admin = service.client(service.token()), service.admin()
    failed = _fresh(alice)
    complete(admin, failed, exit_code=3)
    answer = ok(alice.post("/container_requests/explain_reuse", json={
        "command": ["echo", "hello world"], "cwd": "/var/spool/cwl", "output_path": "/var/spool/cwl",
        "mounts": {"/var/spool/cwl": {"kind": "tmp", "capacity": 1 << 20}},
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 28}}))
    assert answer["nearest"][0]["uuid"] == failed
    assert answer["nearest"][0]["differences"] == ["same work, but it exited with code 3"]
