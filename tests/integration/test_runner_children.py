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
from tests.support.flows import commit, complete, ok
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


class CountingClient(Client):
    """The real client, noting every path it GETs."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.got: list[str] = []

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if method == "GET":
            self.got.append(path)
        return super().request(method, path, *args, **kwargs)


class RecordingJob:
    name = "recorded"

    def __init__(self, succeeds: bool) -> None:
        self.succeeds = succeeds
        self.containers: list[dict[str, Any]] = []
        self.done = threading.Event()

    def outcome(self, container: dict[str, Any]) -> str:
        return "success" if self.succeeds and container.get("exit_code") == 0 else "permanentFail"

    def finish(self, container: dict[str, Any]) -> str:
        self.containers.append(container)
        self.done.set()
        return self.outcome(container)


def test_a_successful_child_is_finished_from_its_final_event_a_failed_one_from_its_record(service):
    token = service.token("alice")
    admin = service.admin()
    api = CountingClient(service.url, token)
    children = Children(api, Keep(api), Reporter(Progress(), lambda status: None))
    children.start()
    try:
        jobs = {}
        for exit_code in (0, 3):
            job = jobs[exit_code] = RecordingJob(succeeds=True)
            children.submit(job, request_body(command=["echo", str(exit_code)]))
            (request,) = [r for r in ok(service.client(token).get("/container_requests"))["items"]
                          if r["command"] == ["echo", str(exit_code)]]
            done = complete(admin, request["container_uuid"], exit_code=exit_code)
            assert job.done.wait(10)
            (seen,) = job.containers
            assert (seen["uuid"], seen["state"], seen["exit_code"], seen["output"]) == (
                done["uuid"], "Complete", exit_code, done["output"])
        succeeded, failed = (jobs[code].containers[0]["uuid"] for code in (0, 3))
        output = jobs[0].containers[0]["output"]
        assert set(children.keep.manifest(output).files) == {"out.txt"}  # what collecting outputs reads
    finally:
        children.close()
    containers_read = [path for path in api.got if path.startswith("/containers/")]
    assert containers_read == [f"/containers/{failed}"]  # the failure's whole record, for its report
    assert f"/collections/{output}" not in api.got  # its manifest came with the event
    assert "runtime_status" in jobs[3].containers[0] and "runtime_status" not in jobs[0].containers[0]
