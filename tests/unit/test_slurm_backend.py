"""The Slurm backend against a recording Slurm: what it submits, cancels and renices, and when."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cwl_crunch.dispatch.backends import BackendUnavailable, Unsatisfiable
from cwl_crunch.dispatch.backends.slurm import STOP_GRACE_SECONDS, SlurmBackend
from cwl_crunch.dispatch.slurm.base import Job
from cwl_crunch.dispatch.slurm.fake import RecordingSlurm
from cwl_crunch.domain.priority import request_rank

A, B = "zzzzz-dz642-aaaaaaaaaaaaaaa", "zzzzz-dz642-bbbbbbbbbbbbbbb"
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _container(uuid: str, state: str = "Locked", request_priority: int = 500) -> dict:
    return {"uuid": uuid, "state": state, "priority": request_rank(request_priority, EPOCH) if request_priority else 0,
            "runtime_constraints": {"vcpus": 1, "ram": 1 << 28}, "scheduling_parameters": {}}


@pytest.fixture
def slurm() -> RecordingSlurm:
    return RecordingSlurm()


@pytest.fixture
def backend(slurm: RecordingSlurm) -> SlurmBackend:
    backend = SlurmBackend(slurm, ["crunchctl", "run-container"])
    backend.bind("zzzzz-dsp42-000000000000001")
    return backend


def test_start_submits_a_job_marked_as_this_dispatchers(backend, slurm):
    backend.start(_container(A))
    job = slurm.job_named(A)
    assert job.comment == "cwl-crunch dispatcher zzzzz-dsp42-000000000000001"
    assert slurm.scripts[job.job_id].endswith(f"exec crunchctl run-container {A}\n")
    assert backend.alive() == {A}


def test_alive_is_one_squeue_and_ignores_other_dispatchers_jobs(backend, slurm):
    backend.start(_container(A))
    slurm.jobs[5] = Job(5, B, "RUNNING", "None", 0, "cwl-crunch dispatcher zzzzz-dsp42-someoneelse0000")
    slurm.jobs[6] = Job(6, "interactive", "RUNNING", "None", 0, "(null)")
    assert backend.alive() == {A}
    assert slurm.count("squeue") == 1


def test_a_waiting_job_is_reported_with_slurms_reason_and_reniced_when_priority_changes(backend, slurm):
    backend.start(_container(A, request_priority=500))
    slurm.set_state(A, "PENDING", "Priority")
    backend.alive()
    tracking = backend.track([_container(A, request_priority=900)], now=0.0)
    job = slurm.job_named(A)
    assert tracking.waiting == {A: f"In slurm queue: job {job.job_id} pending (Priority)."}
    assert ("renice", str(job.job_id), "100") in slurm.calls and job.nice == 100
    backend.alive()
    backend.track([_container(A, request_priority=900)], now=1.0)
    assert slurm.count("renice") == 1  # already at that nice


def test_a_started_job_is_not_waiting(backend, slurm):
    backend.start(_container(A))
    slurm.set_state(A, "RUNNING")
    backend.alive()
    assert backend.track([_container(A)], now=0.0).waiting == {}


def test_a_pending_job_nobody_wants_is_cancelled_at_once(backend, slurm):
    backend.start(_container(A))
    backend.alive()
    backend.track([], now=0.0)  # the container left Locked (held, cancelled)
    assert slurm.jobs == {} and slurm.count("scancel") == 1


def test_a_running_job_nobody_wants_gets_time_to_stop_itself_before_scancel(backend, slurm):
    backend.start(_container(A))
    slurm.set_state(A, "RUNNING")
    for now in (0.0, STOP_GRACE_SECONDS - 1):
        backend.alive()
        backend.track([_container(A, "Running", request_priority=0)], now=now)
        assert slurm.count("scancel") == 0
    backend.alive()
    backend.track([_container(A, "Running", request_priority=0)], now=STOP_GRACE_SECONDS)
    assert slurm.count("scancel") == 1 and slurm.jobs == {}


def test_a_job_slurm_can_never_start_is_cancelled_and_reported_impossible(backend, slurm):
    backend.start(_container(A))
    slurm.set_state(A, "PENDING", "BadConstraints")
    backend.alive()
    tracking = backend.track([_container(A)], now=0.0)
    assert "BadConstraints" in tracking.impossible[A] and slurm.jobs == {}


def test_starting_a_container_again_cancels_its_earlier_job_first(backend, slurm):
    backend.start(_container(A))
    first = slurm.job_named(A).job_id
    backend.start(_container(A))  # held and released before a reconciliation saw the old job go
    assert ("scancel", str(first)) in slurm.calls and len(slurm.jobs) == 1


def test_two_jobs_for_one_container_keep_the_newest(backend, slurm):
    backend.start(_container(A))
    older = slurm.job_named(A)
    slurm.jobs[older.job_id + 100] = Job(older.job_id + 100, A, "PENDING", "None", 500, older.comment)
    assert backend.alive() == {A}
    assert ("scancel", str(older.job_id)) in slurm.calls


def test_refusals_and_outages_reach_the_dispatcher_as_such(backend, slurm):
    slurm.reject_with = "Requested node configuration is not available"
    with pytest.raises(Unsatisfiable, match="Requested node configuration"):
        backend.start(_container(A))
    slurm.reject_with, slurm.down = None, True
    with pytest.raises(BackendUnavailable):
        backend.start(_container(A))
    with pytest.raises(BackendUnavailable):
        backend.alive()
