"""The dispatcher with the Slurm backend against a real service, Slurm being a recording stand-in:
what reaches the API (locks, statuses, cancels) for each thing Slurm does. The real Slurm runs in
tests/integration/test_slurm.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cwl_crunch.client import Client
from cwl_crunch.dispatch.backends.slurm import SlurmBackend
from cwl_crunch.dispatch.dispatcher import Dispatcher
from cwl_crunch.dispatch.slurm.fake import RecordingSlurm
from cwl_crunch.dispatch.statuses import QUEUE_STATUS_DELAY
from tests.support.flows import commit, ok

GiB = 1 << 30


@pytest.fixture
def recording() -> RecordingSlurm:
    return RecordingSlurm()


def _dispatcher(service: Any, recording: RecordingSlurm, remembered: Path | None = None, supervisors: int = 4) -> Dispatcher:
    backend = SlurmBackend(recording, ["crunchctl", "run-container"], supervisors=supervisors)
    dispatcher = Dispatcher(Client(service.url, service.admin_token), backend)
    dispatcher.register(remembered)
    return dispatcher


def _container(service: Any, uuid: str) -> dict[str, Any]:
    return ok(service.admin().get(f"/containers/{uuid}"))


def test_every_queued_container_is_submitted_at_once_whatever_it_asks_for(service, recording):
    alice = service.client(service.token("alice"))
    uuids = {commit(alice, command=["echo", str(i)], runtime_constraints={"vcpus": 64, "ram": 500 * GiB})["container_uuid"]
             for i in range(3)}
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    assert {job.name for job in recording.jobs.values()} == uuids
    assert all(_container(service, u)["state"] == "Locked" for u in uuids)
    assert all("--cpus-per-task=64" in args and f"--mem={500 * 1024}" in args for args in recording.arguments.values())


def test_workflow_runners_are_still_capped_so_they_cannot_fill_the_cluster(service, recording):
    alice = service.client(service.token("alice"))
    runners = [commit(alice, command=["echo", f"runner {i}"], scheduling_parameters={"supervisor": True})["container_uuid"]
               for i in range(3)]
    steps = [commit(alice, command=["echo", f"step {i}"], priority=1)["container_uuid"] for i in range(3)]
    dispatcher = _dispatcher(service, recording, supervisors=2)
    dispatcher.tick(now=1.0)
    submitted = {job.name for job in recording.jobs.values()}
    assert set(steps) <= submitted and len(submitted & set(runners)) == 2
    (held_back,) = set(runners) - submitted
    dispatcher.tick(now=1.0 + QUEUE_STATUS_DELAY, queue_max_age=10)
    assert _container(service, held_back)["scheduling_status"] == (
        "Waiting in queue at position 1. All 2 workflow runner slots are in use.")


def test_a_job_waiting_in_slurm_shows_slurms_reason_then_preparing_once_it_starts(service, recording):
    alice = service.client(service.token("alice"))
    request = commit(alice, command=["echo", "hi"])
    uuid = request["container_uuid"]
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    recording.set_state(uuid, "PENDING", "Resources")
    dispatcher.tick(now=1.5)
    assert _container(service, uuid)["scheduling_status"] == "Preparing runtime environment.", "not before a second"

    dispatcher.tick(now=1.5 + QUEUE_STATUS_DELAY)
    job = recording.job_named(uuid)
    container = _container(service, uuid)
    assert container["scheduling_status"] == f"In slurm queue: job {job.job_id} pending (Resources)."
    assert container["runtime_status"] == {"activity": "in slurm queue"}
    status = ok(alice.get(f"/container_requests/{request['uuid']}/container_status"))
    assert status["scheduling_status"] == f"In slurm queue: job {job.job_id} pending (Resources)."

    recording.set_state(uuid, "RUNNING")
    dispatcher.tick(now=5.0)
    container = _container(service, uuid)
    assert container["scheduling_status"] == "Preparing runtime environment."
    assert "activity" not in container["runtime_status"]


def test_a_job_slurm_rejects_for_good_cancels_the_container_as_unsatisfiable(service, recording):
    alice = service.client(service.token("alice"))
    request = commit(alice, command=["echo", "hi"])
    recording.reject_with = "Requested node configuration is not available"
    _dispatcher(service, recording).tick(now=1.0)
    container = _container(service, request["container_uuid"])
    assert container["state"] == "Cancelled"
    assert container["runtime_status"] == {
        "error": "constraints not satisfiable: slurm rejected the job: Requested node configuration is not available",
        "cause": "unsatisfiable"}
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["state"] == "Final"


def test_when_sbatch_fails_for_now_the_container_goes_back_and_dispatch_pauses(service, recording):
    alice = service.client(service.token("alice"))
    uuids = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(3)]
    dispatcher = _dispatcher(service, recording)
    recording.sbatch_down = True
    dispatcher.tick(now=1.0)
    assert recording.count("sbatch") == 1, "one failure pauses dispatch: no lock attempt is wasted on the others"
    assert [_container(service, u)["state"] for u in uuids] == ["Queued"] * 3
    assert sum(_container(service, u)["lock_count"] for u in uuids) == 1
    dispatcher.tick(now=1.5)
    assert recording.count("sbatch") == 1, "still paused"
    dispatcher.tick(now=2.1)  # the pause (1 s) is over: it tries again, fails, and waits twice as long
    assert recording.count("sbatch") == 2
    dispatcher.tick(now=2.1 + QUEUE_STATUS_DELAY)
    untried = [u for u in uuids if _container(service, u)["lock_count"] == 0]
    assert len(untried) == 2 and all(_container(service, u)["scheduling_status"].startswith(
        "Waiting for the slurm backend, which cannot take work now (sbatch: error:") for u in untried)

    recording.sbatch_down = False
    dispatcher.tick(now=4.2)
    assert {job.name for job in recording.jobs.values()} == set(uuids)


def test_when_squeue_fails_nothing_is_unlocked_and_nothing_started(service, recording):
    alice = service.client(service.token("alice"))
    first = commit(alice, command=["echo", "first"])["container_uuid"]
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    second = commit(alice, command=["echo", "second"])["container_uuid"]
    recording.down = True
    dispatcher.tick(now=2.0)
    assert _container(service, first)["state"] == "Locked"
    assert _container(service, second)["state"] == "Queued" and _container(service, second)["lock_count"] == 0
    recording.down = False
    dispatcher.tick(now=3.5)
    assert {job.name for job in recording.jobs.values()} == {first, second}


def test_a_job_that_vanished_while_locked_is_unlocked_and_submitted_again(service, recording):
    alice = service.client(service.token("alice"))
    uuid = commit(alice, command=["echo", "hi"])["container_uuid"]
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    first = recording.job_named(uuid).job_id
    recording.vanish(uuid)  # e.g. the node failed before crunch-run started, or an admin scancel'ed it
    dispatcher._queue_stale.set()  # what the unlock's event does
    dispatcher.tick(now=2.0)
    assert _container(service, uuid)["lock_count"] == 2
    assert recording.job_named(uuid).job_id != first


def test_a_job_whose_container_vanished_while_running_is_left_to_the_heartbeat_rule(service, recording):
    alice = service.client(service.token("alice"))
    uuid = commit(alice, command=["echo", "hi"])["container_uuid"]
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    ok(service.admin().put(f"/containers/{uuid}", json={"state": "Running"}))
    recording.vanish(uuid)
    dispatcher.tick(now=2.0)
    assert _container(service, uuid)["state"] == "Running"
    assert recording.count("sbatch") == 1


def test_holding_or_cancelling_a_request_scancels_its_waiting_job(service, recording):
    alice = service.client(service.token("alice"))
    held = commit(alice, command=["echo", "held"])
    cancelled = commit(alice, command=["echo", "cancelled"])
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    jobs = {uuid: recording.job_named(uuid).job_id for uuid in (held["container_uuid"], cancelled["container_uuid"])}

    ok(alice.post(f"/container_requests/{held['uuid']}/hold"))
    ok(alice.put(f"/container_requests/{cancelled['uuid']}", json={"priority": 0}))
    dispatcher.tick(now=2.0)
    assert {("scancel", str(job_id)) for job_id in jobs.values()} <= set(recording.calls)
    assert recording.jobs == {}
    assert _container(service, held["container_uuid"])["state"] == "Queued"
    assert _container(service, cancelled["container_uuid"])["state"] == "Cancelled"

    ok(alice.post(f"/container_requests/{held['uuid']}/release"))
    dispatcher._queue_stale.set()
    dispatcher.tick(now=3.0)
    assert recording.job_named(held["container_uuid"]).job_id not in jobs.values()


def test_a_new_priority_renices_the_waiting_job(service, recording):
    alice = service.client(service.token("alice"))
    request = commit(alice, command=["echo", "hi"], priority=100)
    dispatcher = _dispatcher(service, recording)
    dispatcher.tick(now=1.0)
    assert recording.job_named(request["container_uuid"]).nice == 900
    ok(alice.put(f"/container_requests/{request['uuid']}", json={"priority": 700}))
    dispatcher.tick(now=2.0)
    job = recording.job_named(request["container_uuid"])
    assert job.nice == 300 and ("renice", str(job.job_id), "300") in recording.calls


def test_a_restarted_dispatcher_adopts_its_jobs_and_unlocks_what_has_none(service, recording, tmp_path):
    alice = service.client(service.token("alice"))
    kept, lost = (commit(alice, command=["echo", name])["container_uuid"] for name in ("kept", "lost"))
    remembered = tmp_path / "dispatcher-uuid"
    _dispatcher(service, recording, remembered).tick(now=1.0)
    recording.set_state(kept, "RUNNING")
    recording.vanish(lost)

    restarted = _dispatcher(service, recording, remembered)  # a new process: nothing in memory
    restarted.tick(now=1.0)
    assert _container(service, kept)["state"] == "Locked" and _container(service, kept)["lock_count"] == 1
    assert [c for c in recording.calls if c == ("sbatch", kept)] == [("sbatch", kept)], "adopted, not submitted again"
    assert _container(service, lost)["lock_count"] == 2, "unlocked and dispatched again"
