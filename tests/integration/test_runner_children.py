"""The runner's bookkeeping of its child requests (cwl_crunch.cwl.children) against a real service."""

from __future__ import annotations

import threading
import time
from typing import Any

from cwl_crunch.client import Client
from cwl_crunch.cwl.children import Children
from cwl_crunch.cwl.keepfs import Keep
from cwl_crunch.cwl.report import Reporter
from cwl_crunch.domain.progress import Progress
from tests.support.flows import commit, complete
from tests.support.service import request_body


class SlowJob:
    """Stands in for a CrunchJob: counts how often it is finished, and finishing takes a while."""

    name = "slow"

    def __init__(self) -> None:
        self.finished = 0
        self.done = threading.Event()

    def outcome(self, container: dict[str, Any]) -> str:
        return "success"

    def finish(self, container: dict[str, Any]) -> str:
        self.finished += 1
        time.sleep(0.5)  # long enough for the request's own Final event to arrive meanwhile
        self.done.set()
        return "success"


def test_a_child_reused_whole_is_finished_exactly_once(service):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    complete(admin, commit(alice, command=["echo", "reused"])["container_uuid"])

    api = Client(service.url, token)
    children = Children(api, Keep(api), Reporter(Progress(), lambda status: None))
    children.start()
    try:
        job = SlowJob()
        children.submit(job, request_body(command=["echo", "reused"]))  # Final at once: the container is reused
        assert job.done.wait(10)
        time.sleep(1.0)  # any second finish would have started by now
        assert job.finished == 1
        assert not children.pending()
    finally:
        children.close()


class WaitingJob:
    name = "same"

    def outcome(self, container: dict[str, Any]) -> str:
        return "success"

    def finish(self, container: dict[str, Any]) -> str:
        return "success"


def running_soon(progress: Progress, count: int, timeout: float = 10) -> dict[str, int]:
    """The counters once `count` children are running, or when `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while progress.counters()["jobsRunning"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return progress.counters()


def test_identical_steps_sharing_one_container_all_count_as_running(service):
    token = service.token("alice")
    api = Client(service.url, token)
    progress = Progress()
    children = Children(api, Keep(api), Reporter(progress, lambda status: None))
    children.start()
    try:
        body = request_body(command=["echo", "twice"])
        children.submit(WaitingJob(), body)
        children.submit(WaitingJob(), body)  # reuses the first one's queued container
        containers = {r["container_uuid"] for r in service.client(token).get("/container_requests").json()["items"]}
        assert len(containers) == 1
        admin = service.admin()
        (container,) = containers
        admin.post(f"/containers/{container}/lock")
        admin.put(f"/containers/{container}", json={"state": "Running"})
        assert running_soon(progress, 2) == {"jobsComplete": 0, "jobsWaiting": 0, "jobsRunning": 2, "jobsFailed": 0}
    finally:
        children.close()


def test_steps_that_reuse_running_containers_count_as_running(service):
    """No event tells that a reused container is Running already: the runner reads the states
    of such containers (in one list call) shortly after submitting."""
    token = service.token("alice")
    admin = service.admin()
    bodies = [request_body(command=["echo", str(n)]) for n in range(3)]
    for n in range(3):  # an earlier run's containers, running now
        container = commit(service.client(token), command=["echo", str(n)])
        admin.post(f"/containers/{container['container_uuid']}/lock")
        admin.put(f"/containers/{container['container_uuid']}", json={"state": "Running"})
    api = Client(service.url, token)
    progress = Progress()
    children = Children(api, Keep(api), Reporter(progress, lambda status: None))
    children.start()
    try:
        for body in bodies:
            children.submit(WaitingJob(), body)
        assert progress.counters()["jobsWaiting"] == 3  # what the requests say until checked
        assert running_soon(progress, 3) == {"jobsComplete": 0, "jobsWaiting": 0, "jobsRunning": 3, "jobsFailed": 0}
    finally:
        children.close()
