"""Containers through a real single-node Slurm (SPEC §6): the API server, `crunchctl dispatch
--backend slurm`, sbatch'ed jobs running `crunchctl run-container`, and bubblewrap under them.

The Slurm cluster is started once per session by the `slurm` fixture (tests/support/slurm.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from tests.support.cluster import Cluster, sqlite_cluster
from tests.support.flows import ok
from tests.support.slurm import ThrowawaySlurm

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parent.parent.parent / "examples"
MiB = 1 << 20


@pytest.fixture
def cluster(slurm: ThrowawaySlurm, tmp_path: Path, sqlite_template: Path) -> Iterator[Cluster]:
    """A service whose dispatcher runs every container as a Slurm job; the test starts it."""
    try:
        with sqlite_cluster(tmp_path, sqlite_template, real_clock=True, janitor_interval=0.5) as cluster:
            cluster.dispatcher_env = slurm.env
            cluster.dispatcher_options = ["--backend", "slurm"]
            yield cluster
    finally:
        slurm.run("scancel", "--user=root")
        slurm.wait_for_no_jobs()


def _squeue(slurm: ThrowawaySlurm) -> dict[str, dict[str, str]]:
    """The cluster's jobs by name (our container uuids): id, state, reason, nice, partition, time limit."""
    done = slurm.run("squeue", "--noheader", "--format=%j|%i|%T|%r|%y|%P|%l", check=True)
    jobs = {}
    for line in done.stdout.splitlines():
        name, *values = line.strip().split("|")
        jobs[name] = dict(zip(("id", "state", "reason", "nice", "partition", "time_limit"), values, strict=True))
    return jobs


def _eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def test_a_container_runs_to_complete_with_logs_as_a_slurm_job(cluster: Cluster) -> None:
    cluster.start_dispatcher()
    request = cluster.submit(command=["sh", "-c", "echo hello from slurm; echo oops >&2"],
                             runtime_constraints={"vcpus": 1, "ram": 64 * MiB})
    container = cluster.wait_final(request["container_uuid"], timeout=60)
    assert (container["state"], container["exit_code"]) == ("Complete", 0), cluster.diagnostics(container["uuid"])
    logs = cluster.log_files(container)
    assert b" hello from slurm\n" in logs["stdout.txt"] and b" oops\n" in logs["stderr.txt"]
    assert b"crunch-run" in logs["crunch-run.txt"]
    dispatcher_log = (cluster.root / "dispatcher.log").read_text()
    assert f"{container['uuid']}: submitted as slurm job" in dispatcher_log


def test_a_job_waiting_for_resources_says_so_and_holding_or_cancelling_scancels(cluster: Cluster, slurm: ThrowawaySlurm) -> None:
    cluster.start_dispatcher()
    admin = cluster.admin
    blocker = cluster.submit(command=["sleep", "120"], runtime_constraints={"vcpus": slurm.cpus, "ram": 64 * MiB})
    cluster.wait_for(blocker["container_uuid"], lambda c: c["state"] == "Running", timeout=60)

    waiting = cluster.submit(command=["echo", "finally"], runtime_constraints={"vcpus": 1, "ram": 64 * MiB},
                             scheduling_parameters={"partitions": ["other"], "max_run_time": 600})
    uuid = waiting["container_uuid"]
    container = cluster.wait_for(uuid, lambda c: c["scheduling_status"].startswith("In slurm queue"), timeout=30)
    job = _squeue(slurm)[uuid]
    assert container["scheduling_status"] == f"In slurm queue: job {job['id']} pending (Resources)."
    assert container["runtime_status"]["activity"] == "in slurm queue"
    assert job["nice"] == "500"  # request priority 500 (the default here) → nice 500
    assert (job["partition"], job["time_limit"]) == ("other", "15:00")  # 600 s + 300 s of slack

    ok(admin.post(f"/container_requests/{waiting['uuid']}/hold"))
    _eventually(lambda: uuid not in _squeue(slurm), what="the held container's job scancel'ed")
    assert cluster.container(uuid)["state"] == "Queued"

    ok(admin.put(f"/container_requests/{blocker['uuid']}", json={"priority": 0}))
    finished = cluster.wait_final(blocker["container_uuid"], timeout=30)
    assert finished["state"] == "Cancelled"
    _eventually(lambda: blocker["container_uuid"] not in _squeue(slurm), what="the cancelled container's job gone")

    ok(admin.post(f"/container_requests/{waiting['uuid']}/release"))
    done = cluster.wait_final(uuid, timeout=60)
    assert (done["state"], done["exit_code"], done["lock_count"]) == ("Complete", 0, 2)


@pytest.mark.parametrize("too_much", ["ram", "vcpus"])
def test_a_container_no_node_can_fit_is_cancelled_with_slurms_reason(cluster: Cluster, slurm: ThrowawaySlurm, too_much: str) -> None:
    cluster.start_dispatcher()
    constraints = {"vcpus": 1, "ram": 64 * MiB}
    constraints[too_much] = 10 * slurm.real_memory_mib * MiB if too_much == "ram" else 10 * slurm.cpus
    request = cluster.submit(command=["echo", "never"], runtime_constraints=constraints)
    container = cluster.wait_final(request["container_uuid"], timeout=30)
    assert container["state"] == "Cancelled"
    assert container["runtime_status"]["cause"] == "unsatisfiable"
    assert container["runtime_status"]["error"].startswith("constraints not satisfiable: slurm rejected the job: ")
    assert ok(cluster.admin.get(f"/container_requests/{request['uuid']}"))["state"] == "Final"


def test_a_restarted_dispatcher_adopts_the_jobs_still_in_slurm(cluster: Cluster, slurm: ThrowawaySlurm) -> None:
    cluster.start_dispatcher()
    request = cluster.submit(command=["sh", "-c", "sleep 4; echo survived"], runtime_constraints={"vcpus": 1, "ram": 64 * MiB})
    uuid = request["container_uuid"]
    cluster.wait_for(uuid, lambda c: c["state"] == "Running", timeout=60)
    job_id = _squeue(slurm)[uuid]["id"]
    cluster.stop_dispatcher(signal.SIGKILL)

    cluster.start_dispatcher()
    done = cluster.wait_final(uuid, timeout=60)
    assert (done["state"], done["exit_code"], done["lock_count"]) == ("Complete", 0, 1)
    assert b" survived\n" in cluster.log_files(done)["stdout.txt"]
    assert f"submitted as slurm job {job_id}" in (cluster.root / "dispatcher.log").read_text()
    assert (cluster.root / "dispatcher.log").read_text().count("submitted as slurm job") == 1, "adopted, not resubmitted"


def _run_workflow(cluster: Cluster, outdir: Path) -> dict[str, Any]:
    token = cluster.service.token("alice")
    command = [sys.executable, "-m", "cwl_crunch.cwl.main", "--api", cluster.service.url, "--token", token,
               "--outdir", str(outdir), str(EXAMPLES / "wordcount.cwl"), str(EXAMPLES / "wordcount.yml")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:] + cluster.diagnostics("")
    return json.loads(done.stdout)


def test_a_cwl_workflow_through_slurm_gives_the_same_outputs_as_the_local_backend(
        cluster: Cluster, slurm: ThrowawaySlurm, tmp_path: Path, sqlite_template: Path) -> None:
    cluster.start_dispatcher()
    through_slurm = _run_workflow(cluster, tmp_path / "slurm-out")

    with sqlite_cluster(tmp_path / "local", sqlite_template, real_clock=True) as local:  # nothing reused
        local.start_dispatcher("--vcpus", "8")
        through_local = _run_workflow(local, tmp_path / "local-out")

    def files(outputs: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
        return {name: (value["checksum"], Path(unquote(urlparse(value["location"]).path)).read_bytes())
                for name, value in outputs.items()}

    assert set(through_slurm) == {"frequent", "total"}
    assert files(through_slurm) == files(through_local)
    assert files(through_slurm)["total"][1].strip().isdigit()
