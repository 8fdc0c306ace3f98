"""`cwl-crunch` end to end (SPEC §10): a real server, a real dispatcher, real runner containers.

The headline: a run shows it is doomed within seconds of its first failed step, and a
resubmission adopts every healthy step — finished or still running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, sqlite_cluster

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent.parent / "data" / "cwl"
EXAMPLES = Path(__file__).parent.parent.parent / "examples"


@pytest.fixture
def cluster(tmp_path: Path, sqlite_template: Path) -> Iterator[Cluster]:
    with sqlite_cluster(tmp_path, sqlite_template, real_clock=True, janitor_interval=0.5) as cluster:
        cluster.start_dispatcher("--vcpus", "16", "--supervisors", "4")
        yield cluster


class Runs:
    """`cwl-crunch` against the test cluster, as alice."""

    def __init__(self, cluster: Cluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.token = cluster.service.token("alice")
        self.api = cluster.service.client(self.token)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cwl_crunch.cwl.main", "--api", self.cluster.service.url, "--token", self.token, *args]

    def run(self, *args: str, outdir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("--outdir", str(outdir), *args), capture_output=True, text=True, timeout=timeout)

    def submit(self, workflow: Path, inputs: dict[str, Any], name: str) -> str:
        job = self.tmp_path / f"{name}.json"
        job.write_text(json.dumps(inputs))
        done = subprocess.run(self.command("--no-wait", "--name", name, str(workflow), str(job)),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def get(self, resource: str, uuid: str) -> dict[str, Any]:
        response = self.api.get(f"/{resource}/{uuid}")
        assert response.status_code == 200, response.text
        return response.json()

    def container_of(self, request_uuid: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(lambda: self._container(request_uuid), timeout)

    def _container(self, request_uuid: str) -> dict[str, Any] | None:
        uuid = self.get("container_requests", request_uuid).get("container_uuid")
        return self.get("containers", uuid) if uuid else None

    def children(self, runner_container: str) -> dict[str, dict[str, Any]]:
        filters = json.dumps([["requesting_container_uuid", "=", runner_container]])
        response = self.api.get("/container_requests", params={"filters": filters, "limit": "100"})
        return {item["name"]: item for item in response.json()["items"]}

    @staticmethod
    def wait(probe: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout} s")


def _seconds_since(stamp: str) -> float:
    return datetime.now().astimezone().timestamp() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_doomed_run_says_so_at_once_and_a_resubmission_adopts_its_healthy_work(cluster: Cluster, tmp_path: Path) -> None:
    runs = Runs(cluster, tmp_path)
    workflow = DATA / "doomed.cwl"
    timing = {"long": 40, "short": 20}  # sibling_4 must still run when the resubmission adopts it
    first = runs.submit(workflow, {"fail": True, **timing}, "first")
    runner = runs.container_of(first)

    # Within 2 s of fail_fast's container finishing, the runner's container shows the error and counters.
    failed = runs.wait(lambda: (c := runs.children(runner["uuid"])).get("fail_fast", {}).get("state") == "Final" and c, 90)
    status = runs.wait(lambda: (runs.get("containers", runner["uuid"])["runtime_status"] or {}).get("error")
                       and runs.get("containers", runner["uuid"])["runtime_status"], 10, every=0.02)
    fail_fast = runs.get("containers", failed["fail_fast"]["container_uuid"])
    assert _seconds_since(fail_fast["finished_at"]) < 2.0 + 0.5  # observed within 2 s (+ this poll's own latency)
    first_error = f"step fail_fast ({failed['fail_fast']['uuid']}) failed: exit code 3"
    assert status["error"] == first_error
    assert "fail_fast: bad input" in status["errorDetail"]
    assert (status["jobsFailed"], status["jobsRunning"], status["jobsComplete"]) == (1, 4, 1)

    # Resubmitting while the siblings still run: a new runner (the doomed one is not reused)...
    second = runs.submit(workflow, {"fail": True, **timing}, "second")
    runner_2 = runs.container_of(second)
    assert runner_2["uuid"] != runner["uuid"]
    adopted = runs.wait(lambda: len(c := runs.children(runner_2["uuid"])) >= 6 and c, 60)
    old = runs.children(runner["uuid"])
    # ...whose children reuse the four running siblings and the finished prep: no new containers.
    for step in ("prep", "sibling_1", "sibling_2", "sibling_3", "sibling_4"):
        assert adopted[step]["container_uuid"] == old[step]["container_uuid"], step
    for step in ("sibling_1", "sibling_2", "sibling_3", "sibling_4"):
        assert runs.get("containers", old[step]["container_uuid"])["state"] == "Running", step

    # sibling_4 fails later: the first run's message gains a count, its first part unchanged.
    later = runs.wait(lambda: "additional" in ((e := runs.get("containers", runner["uuid"])["runtime_status"] or {}).get("error") or "") and e, 60)
    assert later["error"] == f"{first_error} (1 additional errors)"
    assert later["jobsFailed"] == 2

    # Fixed input: the resubmission completes, reusing the siblings that succeed, with correct outputs.
    outdir = tmp_path / "fixed"
    job = tmp_path / "fixed.json"
    job.write_text(json.dumps({"fail": False, **timing}))
    done = runs.run(str(workflow), str(job), outdir=outdir, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (outdir / "report.txt").read_text() == "".join(
        f"{name} done\n" for name in ("fail_fast", "sibling_1", "sibling_2", "sibling_3", "sibling_4"))
    output = json.loads(done.stdout)
    assert output["report"]["location"] == (outdir / "report.txt").as_uri()


def test_a_second_run_reuses_every_step_and_gives_identical_outputs(cluster: Cluster, tmp_path: Path) -> None:
    runs = Runs(cluster, tmp_path)
    outputs, containers = [], []
    for attempt in ("one", "two"):
        done = runs.run(str(EXAMPLES / "wordcount.cwl"), str(EXAMPLES / "wordcount.yml"), outdir=tmp_path / attempt)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(json.loads(done.stdout))
        containers.append({c["uuid"] for c in runs.api.get("/containers", params={"limit": "1000"}).json()["items"]})
    assert len(containers[0]) > 3  # the runner and its steps
    assert containers[1] == containers[0], "the second run made no new container"
    # Each step's files went to the service inside its request (a mount's manifest), not by a
    # call of their own; the requests were stored alike, so the second run reused them all.
    names = [c["name"] for c in runs.api.get("/collections", params={"limit": "1000"}).json()["items"]]
    assert not [n for n in names if n.startswith("inputs of ")]
    assert [n for n in names if n.startswith("mounted at /keep/")]
    for name in ("frequent", "total"):
        a, b = outputs[0][name], outputs[1][name]
        assert (a["checksum"], a["size"], a["basename"]) == (b["checksum"], b["size"], b["basename"])
        assert Path(a["location"][7:]).read_bytes() == Path(b["location"][7:]).read_bytes()


def test_interrupting_a_local_run_cancels_its_outstanding_steps(cluster: Cluster, tmp_path: Path) -> None:
    runs = Runs(cluster, tmp_path)
    job = tmp_path / "slow.json"
    job.write_text(json.dumps({"fail": False, "long": 60, "short": 60}))
    process = subprocess.Popen(runs.command("--local", "--outdir", str(tmp_path / "out"), str(DATA / "doomed.cwl"), str(job)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = runs.wait(lambda: [r for r in runs.api.get("/container_requests", params={"limit": "100"}).json()["items"]
                                     if r["name"].startswith("sibling") and r["state"] == "Committed"], 90)
        assert len(running) >= 1
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    items = runs.api.get("/container_requests", params={"limit": "100"}).json()["items"]
    siblings = [r for r in items if r["name"].startswith("sibling")]
    assert siblings and all(r["priority"] == 0 for r in siblings), [(r["name"], r["priority"], r["state"]) for r in siblings]
    for request in siblings:
        container = runs.get("containers", request["container_uuid"])
        runs.wait(lambda c=container: runs.get("containers", c["uuid"])["state"] == "Cancelled", 30)
    assert process.returncode != 0


def test_secret_inputs_reach_the_tool_but_never_the_request(cluster: Cluster, tmp_path: Path) -> None:
    runs = Runs(cluster, tmp_path)
    job = tmp_path / "secret.json"
    job.write_text(json.dumps({"password": "hunter2"}))
    done = runs.run(str(DATA / "secret.cwl"), str(job), outdir=tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "out.txt").read_text() == "length 7\n"
    requests = runs.api.get("/container_requests", params={"limit": "10"}).json()["items"]
    assert requests and all("hunter2" not in json.dumps(r) for r in requests)
    containers = runs.api.get("/containers", params={"limit": "10"}).json()["items"]
    assert containers and all("hunter2" not in json.dumps(c) for c in containers)
