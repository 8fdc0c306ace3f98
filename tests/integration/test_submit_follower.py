"""`cwl-crunch --submit --wait` follows its run through the event stream: only the events of the
runner's request and of its current container, including a new container after a retry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cwl_crunch.client import Client
from cwl_crunch.cwl.submit import Follower
from tests.support.flows import ok, run
from tests.support.service import request_body


def _eventually(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {probe}")


def test_the_follower_sees_only_its_run_and_moves_to_the_container_of_a_retry(service, tmp_path) -> None:
    admin, alice_token = service.admin(), service.token("alice")
    alice = service.client(alice_token)
    request = ok(alice.post("/container_requests", json=request_body(command=["runner"])))
    first = request["container_uuid"]

    follower = Follower(Client(service.url, alice_token), None, request)
    seen: list[str] = []
    handle = follower._on_event
    follower._on_event = lambda event: (seen.append(event["object_uuid"]), handle(event))  # type: ignore[method-assign]
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(follower.wait(str(tmp_path))), daemon=True)
    thread.start()
    _eventually(lambda: follower._followed == first)

    other = ok(alice.post("/container_requests", json=request_body(command=["a", "step"])))  # not ours
    run(admin, first)
    ok(admin.put(f"/containers/{first}", json={"state": "Cancelled", "runtime_status": {"cause": "infrastructure"}}))
    retry = ok(alice.get(f"/container_requests/{request['uuid']}"))["container_uuid"]
    assert retry != first
    _eventually(lambda: follower._followed == retry)

    service.clock.advance(5)  # past the retry's backoff
    run(admin, retry)  # its events reach the follower only if it follows the new container
    _eventually(lambda: retry in seen)
    ok(admin.put(f"/containers/{retry}", json={"state": "Cancelled", "runtime_status": {"cause": "setup"}}))
    thread.join(10)
    assert result == [1]  # the run failed, and the follower saw it end
    assert other["uuid"] not in seen and other["container_uuid"] not in seen
    assert set(seen) <= {request["uuid"], first, retry}
