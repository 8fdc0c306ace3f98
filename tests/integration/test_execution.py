"""Containers really run (SPEC §6, §7): API server + `crunchctl dispatch` + crunch-run + bubblewrap.

Every test drives real processes over HTTP; the server's clock is the test's (FakeClock), so
heartbeat timeouts happen when a test moves it, not when the machine is slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from cwl_crunch.runner.runtimes.cgroups import CGROUP_ROOT
from cwl_crunch.services import containers as services_containers
from cwl_crunch.store import Store
from cwl_crunch.store.schema import live_logs
from tests.support.cluster import Cluster, cluster_over, require_bwrap
from tests.support.flows import ok

STAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")
GiB = 1 << 30

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_store(tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    path = tmp_path / "data" / "crunch.sqlite3"
    path.parent.mkdir()
    shutil.copy(sqlite_template, path)
    store = Store(f"sqlite:///{path}")
    yield store
    store.dispose()


@pytest.fixture
def cluster(sqlite_store: Store, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose dispatcher is started by the test (so it can choose the options)."""
    with cluster_over(sqlite_store, tmp_path) as running:
        yield running


@pytest.fixture(params=["local", "podman"])
def image(request: pytest.FixtureRequest) -> str:
    """The container_image a test runs with: "" (the local runtime) or a busybox image in podman."""
    if request.param == "local":
        return ""
    request.getfixturevalue("podman_environment")  # crunch-run inherits the private podman configuration
    return request.getfixturevalue("busybox_image")


@pytest.fixture
def running_cluster(cluster: Cluster) -> Cluster:
    cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
    return cluster


def lines(data: bytes) -> list[bytes]:
    """The text of stamped log lines (each must carry a timestamp)."""
    texts = []
    for line in data.splitlines():
        match = STAMPED.match(line)
        assert match, f"not a stamped log line: {line!r}"
        texts.append(match.group(1))
    return texts


def states_seen(cluster: Cluster, container_uuid: str) -> list[str]:
    events = ok(cluster.admin.get("/events/batch", params={"since": 0}))["items"]
    return [e["properties"]["new_state"] for e in events
            if e["object_uuid"] == container_uuid and (e["event_type"] == "create"
                                                       or e["properties"]["old_state"] != e["properties"]["new_state"])]


def live_rows(store: Store, container_uuid: str) -> int:
    with store.read() as tx:
        return len(tx.conn.execute(live_logs.select().where(live_logs.c.container_uuid == container_uuid)).all())


# -- SPEC §7 test cases ---------------------------------------------------------------------


def test_echo_runs_to_complete_with_logs(image: str, running_cluster: Cluster, sqlite_store: Store) -> None:
    request = running_cluster.submit(container_image=image, command=["echo", "hello world"])
    container = running_cluster.wait_final(request["container_uuid"])

    assert (container["state"], container["exit_code"]) == ("Complete", 0), running_cluster.diagnostics(container["uuid"])
    assert states_seen(running_cluster, container["uuid"]) == ["Queued", "Locked", "Running", "Complete"]
    files = running_cluster.log_files(container)
    assert set(files) >= {"crunch-run.txt", "stdout.txt", "stderr.txt", "crunchstat.txt", "container.json", "node.json"}
    assert lines(files["stdout.txt"]) == [b"hello world"]
    assert any(b"final state Complete" in line for line in lines(files["crunch-run.txt"]))
    assert live_rows(sqlite_store, container["uuid"]) == 0, "live log rows must go once the collection is saved"
    final = ok(running_cluster.admin.get(f"/container_requests/{request['uuid']}"))
    assert final["state"] == "Final" and final["log_uuid"] and final["output_uuid"]


def test_a_short_container_sends_its_exit_code_with_its_final_state(image: str, running_cluster: Cluster) -> None:
    # "uploading output" and the exit code are announced only when saving the output takes a
    # while (0.5 s): a short container goes from Running to Complete in one update.
    request = running_cluster.submit(container_image=image, command=["sh", "-c", "echo x > /var/spool/cwl/out.txt"])
    container = running_cluster.wait_final(request["container_uuid"])
    assert (container["state"], container["exit_code"]) == ("Complete", 0)
    events = [e for e in ok(running_cluster.admin.get("/events/batch", params={"since": 0}))["items"]
              if e["object_uuid"] == container["uuid"] and e["event_type"] == "update"]
    states = [e["properties"]["new_state"] for e in events]
    after_running = events[states.index("Running") + 1:]
    assert [e["properties"]["new_state"] for e in after_running] == ["Complete"], events
    assert {"exit_code", "output", "log"} <= set(after_running[0]["properties"]["changed"])
    # The final event carries the result itself: a waiting runner need not read the container.
    assert (after_running[0]["properties"]["exit_code"], after_running[0]["properties"]["output"]) == (
        0, container["output"])
    # And a small output's manifest and digests: a runner collects the outputs without reading the collection.
    output = ok(running_cluster.admin.get(f"/collections/{container['output']}"))
    assert after_running[0]["properties"]["output_manifest"] == output["manifest"]
    assert after_running[0]["properties"]["output_sha1"] == {"out.txt": hashlib.sha1(b"x\n").hexdigest()}


@contextmanager
def requests_seen(cluster: Cluster) -> Iterator[list[tuple[str, str]]]:
    """(method, path) of every request the cluster's server answers meanwhile, on every connection
    opened from here on (the dispatcher's and crunch-runs')."""
    seen: list[tuple[str, str]] = []
    server = cluster.service._server
    inner = server.config.loaded_app

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            seen.append((scope["method"], scope["path"]))
        await inner(scope, receive, send)

    server.config.loaded_app = counting
    try:
        yield seen
    finally:
        server.config.loaded_app = inner


def test_crunch_run_asks_for_secret_mounts_only_when_the_container_has_some(cluster: Cluster) -> None:
    with requests_seen(cluster) as seen:
        cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
        plain = cluster.submit(command=["echo", "plain"])
        secret = cluster.submit(command=["cat", "/etc/secret.txt"],
                                secret_mounts={"/etc/secret.txt": {"kind": "text", "content": "s3cr3t"}})
        finished = [cluster.wait_final(r["container_uuid"]) for r in (plain, secret)]
    paths = [path for _, path in seen]
    assert [c["state"] for c in finished] == ["Complete", "Complete"], cluster.diagnostics(finished[1]["uuid"])
    assert lines(cluster.log_files(finished[1])["stdout.txt"]) == [b"s3cr3t"]
    assert [p for p in paths if p.endswith("/secret_mounts")] == [
        f"/arvados/v1/containers/{secret['container_uuid']}/secret_mounts"]
    assert sum(p.endswith("/lock") for p in paths) == 2  # both went through this server's counting


def test_the_final_state_is_recorded_with_the_output_and_log_collections_in_one_update(cluster: Cluster) -> None:
    with requests_seen(cluster) as seen:
        cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
        request = cluster.submit(command=["sh", "-c", "echo x > /var/spool/cwl/out.txt; echo logged"])
        container = cluster.wait_final(request["container_uuid"])
    assert (container["state"], container["exit_code"]) == ("Complete", 0), cluster.diagnostics(container["uuid"])
    updates = [path for method, path in seen if method == "PUT" and path.endswith(container["uuid"])]
    assert len(updates) == 2  # Running, then Complete with everything
    assert ("POST", "/arvados/v1/collections") not in seen
    output = ok(cluster.admin.get(f"/collections/{container['output']}"))
    assert (output["name"], list(output["manifest"])) == (f"output for {container['uuid']}", ["out.txt"])
    assert lines(cluster.log_files(container)["stdout.txt"]) == [b"logged"]


def test_a_server_refusing_manifests_in_the_final_update_gets_the_collections_first(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # As a server older than crunch-run would: 422 for the unknown attributes, nothing changed.
    monkeypatch.setattr(services_containers, "MANIFEST_ATTRIBUTES", {})
    with requests_seen(cluster) as seen:
        cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
        request = cluster.submit(command=["sh", "-c", "echo x > /var/spool/cwl/out.txt; echo logged"])
        container = cluster.wait_final(request["container_uuid"])
    assert (container["state"], container["exit_code"]) == ("Complete", 0), cluster.diagnostics(container["uuid"])
    assert seen.count(("POST", "/arvados/v1/collections")) == 2
    assert list(ok(cluster.admin.get(f"/collections/{container['output']}"))["manifest"]) == ["out.txt"]
    assert lines(cluster.log_files(container)["stdout.txt"]) == [b"logged"]
    final = ok(cluster.admin.get(f"/container_requests/{request['uuid']}"))
    assert final["state"] == "Final" and final["log_uuid"] and final["output_uuid"]


def test_output_files_sha1_digests_are_recorded_with_the_output(image: str, running_cluster: Cluster) -> None:
    script = "printf hello > a.txt && mkdir sub && printf '' > sub/empty"
    request = running_cluster.submit(container_image=image, command=["sh", "-c", script])
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Complete", running_cluster.diagnostics(container["uuid"])
    digests = {"a.txt": hashlib.sha1(b"hello").hexdigest(), "sub/empty": hashlib.sha1(b"").hexdigest()}
    assert container["output_properties"]["sha1"] == digests
    # The request's output collection (what its owner can read) carries them too.
    final = ok(running_cluster.admin.get(f"/container_requests/{request['uuid']}"))
    assert ok(running_cluster.admin.get(f"/collections/{final['output_uuid']}"))["properties"]["sha1"] == digests


def test_a_finished_containers_work_directory_is_removed(image: str, running_cluster: Cluster) -> None:
    # The output (saved as a collection), tmp mounts and log files (saved too) leave the worker's disk,
    # read-only parts included.
    script = "mkdir -p ro/deep && echo x > ro/deep/f && chmod -R a-w ro && echo y > /tmp/scratch"
    request = running_cluster.submit(container_image=image, command=["sh", "-c", script])
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Complete", running_cluster.diagnostics(container["uuid"])
    workdir = running_cluster.root / "work" / container["uuid"]
    deadline = time.monotonic() + 10
    while workdir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workdir.exists(), sorted(str(p) for p in workdir.rglob("*"))
    assert "ro/deep/f" in json.dumps(ok(running_cluster.admin.get(f"/collections/{container['output']}"))["manifest"])


def test_the_dispatchers_copy_of_a_crunch_run_log_goes_once_everything_is_saved(image: str, running_cluster: Cluster) -> None:
    """What crunch-run printed is in the log collection (crunch-run.txt): the dispatcher keeps its
    own copy (dispatch/<uuid>.log) only while it may be needed, here never."""
    request = running_cluster.submit(container_image=image, command=["echo", "fine"])
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Complete", running_cluster.diagnostics(container["uuid"])
    log = running_cluster.root / "dispatch" / f"{container['uuid']}.log"
    deadline = time.monotonic() + 10
    while log.exists() and time.monotonic() < deadline:  # removed when the dispatcher reaps crunch-run
        time.sleep(0.05)
    assert not log.exists()


def test_false_completes_with_exit_code_1(image: str, running_cluster: Cluster) -> None:
    request = running_cluster.submit(container_image=image, command=["false"])
    container = running_cluster.wait_final(request["container_uuid"])
    assert (container["state"], container["exit_code"]) == ("Complete", 1)


def test_pwd_prints_the_cwd(image: str, running_cluster: Cluster) -> None:
    mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/work/here": {"kind": "tmp"}}
    request = running_cluster.submit(container_image=image, command=["pwd"], cwd="/work/here", mounts=mounts)
    container = running_cluster.wait_final(request["container_uuid"])
    assert lines(running_cluster.log_files(container)["stdout.txt"]) == [b"/work/here"]


def test_stdout_and_stderr_go_to_their_own_files_each_line_stamped(image: str, running_cluster: Cluster) -> None:
    script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
    request = running_cluster.submit(container_image=image, command=["sh", "-c", script])
    files = running_cluster.log_files(running_cluster.wait_final(request["container_uuid"]))
    assert lines(files["stdout.txt"]) == [b"out1", b"out2"]
    assert lines(files["stderr.txt"]) == [b"err1", b"err2"]
    for name in ("crunch-run.txt", "crunchstat.txt"):
        assert lines(files[name]), f"{name} is empty"


def test_a_log_too_large_to_hold_goes_to_its_file_and_arrives_whole(running_cluster: Cluster) -> None:
    """crunch-run holds small logs in memory (no files to create and remove for most containers)
    and writes a log on to the work directory once it outgrows that; the collection gets it all."""
    text = "y" * 60
    script = f"i=0; while [ $i -lt 25000 ]; do echo \"$i {text}\"; i=$((i+1)); done; sleep 2"  # ~2.3 MiB stamped
    request = running_cluster.submit(command=["sh", "-c", script])
    uuid = request["container_uuid"]
    log_dir = running_cluster.root / "work" / uuid / "log"
    deadline = time.monotonic() + 20
    while not (log_dir / "stdout.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (log_dir / "stdout.txt").exists(), "a large log is written on to its file as it grows"
    assert not (log_dir / "crunch-run.txt").exists(), "a small one stays in memory"
    container = running_cluster.wait_final(uuid)
    assert container["state"] == "Complete", running_cluster.diagnostics(uuid)
    assert lines(running_cluster.log_files(container)["stdout.txt"]) == [f"{i} {text}".encode() for i in range(25000)]


def test_a_short_process_gets_one_crunchstat_line_at_its_end_and_a_longer_one_samples_as_it_runs(cluster: Cluster) -> None:
    cluster.start_dispatcher("--crunchstat-interval", "0.2")
    short = cluster.submit(command=["true"])
    longer = cluster.submit(command=["sleep", "1"])
    short_log = lines(cluster.log_files(cluster.wait_final(short["container_uuid"]))["crunchstat.txt"])
    assert len(short_log) == 1 and re.match(rb"cpu \d+\.\d\d user \d+\.\d\d sys; mem \d+ max rss; ended before the first sample$",
                                            short_log[0]), short_log
    longer_log = lines(cluster.log_files(cluster.wait_final(longer["container_uuid"]))["crunchstat.txt"])
    assert len(longer_log) >= 3, longer_log  # from 0.2 s on, every 0.2 s
    assert all(line.startswith(b"cpu ") and b"ended before" not in line for line in longer_log), longer_log


def test_timestamps_are_utc_rfc3339_with_nine_fractional_digits(image: str, running_cluster: Cluster) -> None:
    request = running_cluster.submit(container_image=image, command=["echo", "x"])
    files = running_cluster.log_files(running_cluster.wait_final(request["container_uuid"]))
    for line in files["stdout.txt"].splitlines() + files["crunch-run.txt"].splitlines():
        assert re.match(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line), line
        assert len(line.split(b" ", 1)[0]) == 30


def test_a_missing_command_is_cancelled_with_a_setup_error(image: str, running_cluster: Cluster) -> None:
    request = running_cluster.submit(container_image=image, command=["no-such-command-anywhere"])
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Cancelled"
    assert container["runtime_status"]["cause"] == "setup"
    error = container["runtime_status"]["error"]
    assert "no-such-command-anywhere" in error and "#! interpreter" in error
    assert any(error.encode() in line for line in lines(running_cluster.log_files(container)["crunch-run.txt"]))


def test_an_unreadable_mount_is_cancelled_naming_the_mount(image: str, running_cluster: Cluster) -> None:
    missing = "0" * 64 + "+10"
    mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": {"kind": "collection", "portable_data_hash": missing}}
    request = running_cluster.submit(container_image=image, command=["ls", "/keep/in"], mounts=mounts)
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Cancelled"
    assert container["runtime_status"]["cause"] == "setup"
    assert "/keep/in" in container["runtime_status"]["error"]
    # The local runtime makes the container's cgroups before staging; they go with the failure.
    groups = [CGROUP_ROOT / controller / "crunch" / container["uuid"] for controller in ("memory", "cpu")]
    deadline = time.monotonic() + 5
    while any(group.exists() for group in groups) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(group.exists() for group in groups)


def _one_file_collection(admin: httpx.Client, path: str, data: bytes) -> str:
    """A collection holding `data` at `path` (its blob stored first); its portable data hash."""
    sha = hashlib.sha256(data).hexdigest()
    ok(admin.put(f"/blobs/{sha}", content=data))
    return ok(admin.post("/collections", json={"manifest": {path: {"blob": sha, "size": len(data)}}}))["portable_data_hash"]


def test_collection_mounts_are_shared_read_only(image: str, running_cluster: Cluster) -> None:
    pdh = _one_file_collection(running_cluster.admin, "ref/genome.fa", b"reference\n")
    mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": {"kind": "collection", "portable_data_hash": pdh}}
    script = "cat /keep/in/ref/genome.fa; touch /keep/in/x 2>/dev/null && echo writable || echo read-only"
    first = running_cluster.submit(container_image=image, command=["sh", "-c", script], mounts=mounts)
    second = running_cluster.submit(container_image=image, command=["sh", "-c", script + "; echo again"], mounts=mounts)
    for request in (first, second):
        container = running_cluster.wait_final(request["container_uuid"])
        assert lines(running_cluster.log_files(container)["stdout.txt"])[:2] == [b"reference", b"read-only"]
    cached = running_cluster.root / "work" / "collections" / pdh / "ref" / "genome.fa"
    assert cached.stat().st_nlink >= 2, "the collection is materialised with hard links to the blob"


def test_an_input_collection_is_asked_for_once_and_only_where_the_worker_lacks_it(cluster: Cluster) -> None:
    pdh = _one_file_collection(cluster.admin, "in.txt", b"input\n")
    missing = "0" * 64 + "+10"
    with requests_seen(cluster) as seen:
        cluster.start_dispatcher("--vcpus", "1", "--ram", str(4 * GiB))  # one at a time: the second finds it cached
        finished = []
        for source, word in ((pdh, "first"), (pdh, "second"), (missing, "never")):
            mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": {"kind": "collection", "portable_data_hash": source}}
            request = cluster.submit(command=["sh", "-c", f"cat /keep/in/in.txt; echo {word}"], mounts=mounts)
            finished.append(cluster.wait_final(request["container_uuid"]))
    assert [lines(cluster.log_files(c)["stdout.txt"]) for c in finished[:2]] == [[b"input", b"first"], [b"input", b"second"]]
    assert seen.count(("GET", f"/arvados/v1/collections/{pdh}")) == 1  # asked early by the first, cached for the second
    assert finished[2]["state"] == "Cancelled" and "/keep/in" in finished[2]["runtime_status"]["error"]
    assert seen.count(("GET", f"/arvados/v1/collections/{missing}")) == 2  # early, and again when staging


def test_one_worker_runs_container_after_container_holding_nothing_of_the_last(cluster: Cluster) -> None:
    cluster.start_dispatcher("--vcpus", "1", "--ram", str(4 * GiB))  # one at a time: one worker
    pdh = _one_file_collection(cluster.admin, "in.txt", b"input\n")
    mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": {"kind": "collection", "portable_data_hash": pdh}}
    forkers, workers, held = set(), set(), []
    for word in ("one", "two", "three"):
        request = cluster.submit(command=["sh", "-c", f"cat /keep/in/in.txt; echo {word}"], mounts=mounts)
        uuid = request["container_uuid"]
        done = cluster.wait_final(uuid)
        assert done["state"] == "Complete", cluster.diagnostics(uuid)
        assert lines(cluster.log_files(done)["stdout.txt"]) == [b"input", word.encode()]
        deadline = time.monotonic() + 10
        while uuid in cluster.crunch_run_pids() and time.monotonic() < deadline:
            time.sleep(0.02)  # until the dispatcher has taken in the worker's report
        assert uuid not in cluster.crunch_run_pids() and not (cluster.root / "dispatch" / f"{uuid}.log").exists()
        assert cluster.dispatcher is not None
        forker, worker = _descendants(cluster.dispatcher.pid)  # the forker, and its one worker
        forkers.add(forker)
        workers.add(worker)
        fds = Path(f"/proc/{worker}/fd")
        held.append(sorted((fd.name, os.readlink(fd)) for fd in fds.iterdir()))
    assert len(workers) == 1 and len(forkers) == 1, "the same process ran all three"
    assert held[0] == held[-1], "no descriptor left over from one container to the next"
    assert not [target for _, target in held[-1] if target.endswith(".lock") or target.startswith("socket:")][1:], \
        "idle, it holds no collection lock and no connection but its dispatcher's"


def test_cancelling_a_running_request_stops_it_and_keeps_partial_logs(image: str, running_cluster: Cluster) -> None:
    script = "echo started; sleep 60; echo never"
    request = running_cluster.submit(container_image=image, command=["sh", "-c", script])
    uuid = request["container_uuid"]
    running_cluster.wait_for(uuid, lambda c: c["state"] == "Running")
    time.sleep(0.5)
    pid = running_cluster.crunch_run_pids()[uuid]
    began = time.monotonic()
    ok(running_cluster.admin.put(f"/container_requests/{request['uuid']}", json={"priority": 0}))
    container = running_cluster.wait_final(uuid, timeout=20)
    assert container["state"] == "Cancelled"
    assert time.monotonic() - began < 12, "stopped within the grace period"
    assert lines(running_cluster.log_files(container)["stdout.txt"]) == [b"started"]
    # Its crunch-run is done with it: the worker's pid file for it has gone, and nothing the
    # worker started (sandbox, engine client, command) is left.
    deadline = time.monotonic() + 10
    while (uuid in running_cluster.crunch_run_pids() or _descendants(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uuid not in running_cluster.crunch_run_pids()
    assert _descendants(pid) == [], "the container's processes are gone"


def test_more_ram_than_the_dispatcher_has_is_unsatisfiable(cluster: Cluster) -> None:
    cluster.start_dispatcher("--vcpus", "2", "--ram", str(2 * GiB))
    request = cluster.submit(runtime_constraints={"vcpus": 1, "ram": 40 * GiB})
    container = cluster.wait_final(request["container_uuid"], timeout=10)
    assert container["state"] == "Cancelled"
    assert container["runtime_status"]["cause"] == "unsatisfiable"
    assert container["runtime_status"]["error"] == "constraints not satisfiable: needs 40 GiB RAM, this node has 2 GiB"


def test_a_log_collection_that_cannot_be_saved_keeps_the_live_log(image: str, sqlite_store: Store, tmp_path: Path) -> None:
    with cluster_over(sqlite_store, tmp_path, blobs_read_only=True) as cluster:
        cluster.shared_blobs = False  # crunch-run must go through the API, which refuses new blobs
        cluster.start_dispatcher()
        request = cluster.submit(container_image=image, command=["echo", "kept"])
        container = cluster.wait_final(request["container_uuid"])
        assert container["log"] is None
        assert live_rows(sqlite_store, container["uuid"]) > 0
        with sqlite_store.read() as tx:
            stdout = tx.live_log_files(container["uuid"])["stdout.txt"][0]
        assert stdout.endswith(" kept\n")
        dispatch_log = tmp_path / "dispatch" / f"{container['uuid']}.log"
        deadline = time.monotonic() + 10
        while "not everything was saved" not in dispatch_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        crunch_run_log = dispatch_log.read_text()
        assert "cannot save the log collection (the live log is kept)" in crunch_run_log
        assert "not everything was saved" in crunch_run_log
        assert (tmp_path / "work" / container["uuid"] / "log" / "stdout.txt").exists(), "kept for a look"


def _descendants(pid: int) -> list[int]:
    """The live processes below `pid`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                parents[int(entry.name)] = int(stat[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


# -- failures of the machinery -------------------------------------------------------------


def test_crunch_run_killed_is_retried_after_the_heartbeat_timeout(sqlite_store: Store, tmp_path: Path) -> None:
    """Real time throughout: a 2 s heartbeat timeout, the janitor running, the retry backoff waited out."""
    with cluster_over(sqlite_store, tmp_path, real_clock=True, heartbeat_timeout=2) as running_cluster:
        running_cluster.start_dispatcher()
        _killed_crunch_run_is_retried(running_cluster)


def _killed_crunch_run_is_retried(running_cluster: Cluster) -> None:
    request = running_cluster.submit(command=["sh", "-c", "echo attempt; sleep 3"])
    first = request["container_uuid"]
    running_cluster.wait_for(first, lambda c: c["state"] == "Running")
    time.sleep(1.5)  # heartbeats keep it alive meanwhile
    assert running_cluster.container(first)["state"] == "Running"
    os.killpg(running_cluster.crunch_run_pids()[first], signal.SIGKILL)
    lost = running_cluster.wait_final(first, timeout=10)
    assert lost["state"] == "Cancelled" and lost["runtime_status"]["cause"] == "infrastructure"
    assert "no heartbeat" in lost["runtime_status"]["error"]

    retried = ok(running_cluster.admin.get(f"/container_requests/{request['uuid']}"))
    second = retried["container_uuid"]
    assert second != first and retried["container_count"] == 2
    assert running_cluster.wait_final(second, timeout=30)["state"] == "Complete"
    # Both attempts stay readable: the lost one from its kept live log, the second from its collection.
    base = f"/container_requests/{request['uuid']}/log"
    assert {i["name"] for i in ok(running_cluster.admin.get(f"{base}/"))["items"]} == {first, second}
    for attempt in (first, second):
        response = running_cluster.admin.get(f"{base}/{attempt}/stdout.txt")
        assert response.status_code == 200 and lines(response.content) == [b"attempt"]
    final = ok(running_cluster.admin.get(f"/container_requests/{request['uuid']}"))
    assert final["state"] == "Final"
    log = ok(running_cluster.admin.get(f"/collections/{final['log_uuid']}"))["manifest"]
    assert any(path.startswith(f"log for container {second}/") for path in log)


# The local backend alone, in a process of its own (as in `crunchctl dispatch`): it forks one
# crunch-run for UUID, which locks it for DISPATCHER itself, and waits until that has ended.
_LOCAL_BACKEND = """
import sys, time
from pathlib import Path
from cwl_crunch.dispatch.backends import Capacity
from cwl_crunch.dispatch.backends.local import LocalBackend
from cwl_crunch.runner.crunch_run import Options

api, token, dispatcher, uuid, root = sys.argv[1:]
backend = LocalBackend(Capacity(1, 1 << 30), Path(root) / "dispatch",
                       {"CRUNCH_API": api, "CRUNCH_DISPATCH_TOKEN": token},
                       Options(work_root=Path(root) / "work", heartbeat_seconds=1.0))
backend.bind(dispatcher)
backend.start({"uuid": uuid})
deadline = time.monotonic() + 30
while backend.alive() and time.monotonic() < deadline:
    time.sleep(0.02)
print(sorted(backend.alive()))
"""


def test_crunch_run_locks_its_container_for_its_dispatcher_and_leaves_one_locked_by_another_alone(
        cluster: Cluster) -> None:
    admin = cluster.admin
    ours, theirs = (ok(admin.post("/dispatchers", json={"name": name}))["uuid"] for name in ("ours", "theirs"))
    free = cluster.submit(command=["echo", "ours"])["container_uuid"]
    taken = cluster.submit(command=["echo", "theirs"])["container_uuid"]
    ok(admin.post(f"/containers/{taken}/lock", json={"dispatcher_uuid": theirs}))  # another dispatcher won

    for uuid in (free, taken):
        done = subprocess.run([sys.executable, "-c", _LOCAL_BACKEND, cluster.service.url, cluster.service.admin_token,
                               ours, uuid, str(cluster.root)], capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr + cluster.diagnostics(uuid)

    run = cluster.container(free)
    assert (run["state"], run["dispatcher_uuid"], run["lock_count"]) == ("Complete", ours, 1)
    assert lines(cluster.log_files(run)["stdout.txt"]) == [b"ours"]
    left = cluster.container(taken)
    assert (left["state"], left["dispatcher_uuid"], left["lock_count"]) == ("Locked", theirs, 1)
    # Neither left anything to look at: no work directory, no pid file, no crunch-run log.
    assert not (cluster.root / "work" / taken).exists() and not (cluster.root / "work" / free).exists()
    assert sorted(p.name for p in (cluster.root / "dispatch").iterdir()) == []


def test_dispatcher_killed_and_restarted_adopts_running_and_redispatches_locked(cluster: Cluster) -> None:
    cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
    running = cluster.submit(command=["sh", "-c", "sleep 3; echo done"])
    cluster.wait_for(running["container_uuid"], lambda c: c["state"] == "Running")
    cluster.stop_dispatcher(signal.SIGKILL)
    # A container this dispatcher locked but whose crunch-run never started.
    locked = cluster.submit(command=["echo", "late"])
    dispatcher = ok(cluster.admin.get("/containers/" + running["container_uuid"]))["dispatcher_uuid"]
    ok(cluster.admin.post(f"/containers/{locked['container_uuid']}/lock", json={"dispatcher_uuid": dispatcher}))

    cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))
    adopted = cluster.wait_final(running["container_uuid"])
    assert adopted["state"] == "Complete" and adopted["lock_count"] == 1, "adopted, not run twice"
    assert lines(cluster.log_files(adopted)["stdout.txt"]) == [b"done"]
    redispatched = cluster.wait_final(locked["container_uuid"])
    assert redispatched["state"] == "Complete" and redispatched["lock_count"] == 2


# -- the log endpoint (SPEC §8) -------------------------------------------------------------


def test_log_endpoint_serves_live_then_final_files_with_ranges(running_cluster: Cluster) -> None:
    script = "for i in $(seq 1 30); do echo line $i; sleep 0.1; done"
    request = running_cluster.submit(command=["sh", "-c", script])
    uuid = request["container_uuid"]
    base = f"/container_requests/{request['uuid']}/log"
    admin = running_cluster.admin
    running_cluster.wait_for(uuid, lambda c: c["state"] == "Running")

    # Tail by polling with Range while the container prints a line every 100 ms: each line must
    # show up within 1.5 s of its timestamp.
    offset, seen, delays = 0, b"", []
    deadline = time.monotonic() + 20
    while b"line 30\n" not in seen and time.monotonic() < deadline:
        response = admin.get(f"{base}/{uuid}/stdout.txt", headers={"Range": f"bytes={offset}-"})
        if response.status_code == 206:
            assert response.headers["Content-Range"].startswith(f"bytes {offset}-")
            now = datetime.now(timezone.utc)
            for line in response.content.splitlines():
                stamp = datetime.fromisoformat(line.split(b" ", 1)[0].decode()[:26] + "+00:00")
                delays.append((now - stamp).total_seconds())
            seen += response.content
            offset += len(response.content)
        else:
            assert response.status_code in (404, 416), response.text  # nothing (new) yet
        time.sleep(0.05)
    assert len(lines(seen)) == 30
    assert max(delays) < 1.5, f"live lines arrived up to {max(delays):.2f} s late"

    running_cluster.wait_final(uuid)
    listing = ok(admin.get(f"{base}/{uuid}/"))["items"]
    assert {"stdout.txt", "crunch-run.txt", "container.json"} <= {item["name"] for item in listing}
    whole = admin.get(f"{base}/{uuid}/stdout.txt")
    assert whole.status_code == 200 and len(lines(whole.content)) == 30
    tail = admin.get(f"{base}/{uuid}/stdout.txt", headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == b"line 30\n"
    assert admin.get(f"{base}/{uuid}/stdout.txt", headers={"Range": f"bytes={len(whole.content)}-"}).status_code == 416
    head = admin.head(f"{base}/{uuid}/stdout.txt")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole.content)
    propfind = admin.request("PROPFIND", f"{base}/{uuid}/")
    assert propfind.status_code == 207 and b"<D:getcontentlength>" in propfind.content
    assert admin.request("OPTIONS", f"{base}/").headers["DAV"] == "1"


def test_log_endpoint_follow_streams_until_final(running_cluster: Cluster) -> None:
    request = running_cluster.submit(command=["sh", "-c", "echo one; sleep 1; echo two"])
    uuid = request["container_uuid"]
    running_cluster.wait_for(uuid, lambda c: c["state"] == "Running")
    url = f"/container_requests/{request['uuid']}/log/{uuid}/stdout.txt"
    with running_cluster.admin.stream("GET", url, params={"follow": "1"}, timeout=30) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert lines(body) == [b"one", b"two"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
                                  "zzzzz-dz642-000000000000000/../../x", "zzzzz-dz642-aaaaaaaaaaaaaaa/stdout.txt"])
def test_log_paths_are_confined(cluster: Cluster, path: str) -> None:
    request = cluster.submit(state="Uncommitted")
    response = cluster.admin.get(f"/container_requests/{request['uuid']}/log/{path}")
    assert response.status_code == 404, response.text


def test_an_uncommitted_request_has_an_empty_log_directory(cluster: Cluster) -> None:
    request = cluster.submit(state="Uncommitted")
    assert ok(cluster.admin.get(f"/container_requests/{request['uuid']}/log/"))["items"] == []


def test_crunchctl_logs_merges_and_follows(running_cluster: Cluster) -> None:
    import subprocess
    import sys

    request = running_cluster.submit(command=["sh", "-c", "echo to-out; sleep 1; echo to-err >&2; sleep 0.3; echo last"])
    env = {**os.environ, "CRUNCH_API": running_cluster.service.url, "CRUNCH_API_TOKEN": running_cluster.service.admin_token}
    running_cluster.wait_for(request["container_uuid"], lambda c: c["state"] == "Running")
    command = [sys.executable, "-m", "cwl_crunch.cli.main", "logs"]
    followed = subprocess.run([*command, "-f", request["uuid"]], env=env, capture_output=True, timeout=30, check=True)
    assert lines(followed.stdout) == [b"to-out", b"last"]
    merged = subprocess.run([*command, request["uuid"]], env=env, capture_output=True, timeout=30, check=True)
    texts = [line.split(b" ", 1)[1] for line in merged.stdout.splitlines()]
    assert texts.index(b"stdout to-out") < texts.index(b"stderr to-err") < texts.index(b"stdout last")
    assert any(t.startswith(b"crunch-run final state Complete") for t in texts)


# -- podman only -----------------------------------------------------------------------------


def test_a_missing_image_is_cancelled_with_a_setup_error(podman_environment: object, running_cluster: Cluster) -> None:
    request = running_cluster.submit(container_image="localhost/no-such-image:1")
    container = running_cluster.wait_final(request["container_uuid"])
    assert container["state"] == "Cancelled" and container["runtime_status"]["cause"] == "setup"
    assert "no-such-image" in container["runtime_status"]["error"]
    assert any(b"no-such-image" in line for line in lines(running_cluster.log_files(container)["crunch-run.txt"]))


def test_an_image_given_as_a_collection_is_loaded_once_and_cached(
    cluster: Cluster, podman_environment, busybox_tarball: Path
) -> None:
    import subprocess
    import sys

    env = {**os.environ, "CRUNCH_API": cluster.service.url, "CRUNCH_API_TOKEN": cluster.service.admin_token}
    put = [sys.executable, "-m", "cwl_crunch.cli.main", "image", "put", str(busybox_tarball)]
    pdh = subprocess.run(put, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}\+\d+", pdh)
    again = subprocess.run(put, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert again == pdh, "the same tarball is the same collection"
    # A fresh image store: the image must come from the collection, not from an earlier test.
    podman_environment.run("rmi", "--force", "--all", check=False)
    cluster.start_dispatcher()
    first = cluster.submit(container_image=pdh, command=["echo", "from the collection"])
    container = cluster.wait_final(first["container_uuid"], timeout=60)
    assert container["state"] == "Complete", container["runtime_status"]
    assert lines(cluster.log_files(container)["stdout.txt"]) == [b"from the collection"]
    second = cluster.submit(container_image=pdh, command=["echo", "again"])
    again = cluster.wait_final(second["container_uuid"], timeout=60)
    narrative = lines(cluster.log_files(again)["crunch-run.txt"])
    assert any(b"loading image from collection" in line for line in narrative)
    assert again["state"] == "Complete"


# -- the dispatcher's bookkeeping ---------------------------------------------------------------


def test_dispatcher_never_runs_beyond_its_capacity_and_says_why_others_wait(cluster: Cluster) -> None:
    cluster.start_dispatcher("--vcpus", "2", "--ram", str(4 * GiB))
    requests = [cluster.submit(command=["sleep", "2"], environment={"N": str(i)}, priority=500 - i) for i in range(4)]
    uuids = [r["container_uuid"] for r in requests]
    cluster.wait_for(uuids[1], lambda c: c["state"] == "Running")
    statuses = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(statuses) < 2:
        for request in requests[2:]:
            status = ok(cluster.admin.get(f"/container_requests/{request['uuid']}/container_status"))
            if status["state"] == "Queued" and status["scheduling_status"]:
                statuses[request["uuid"]] = status["scheduling_status"]
        time.sleep(0.1)
    assert statuses[requests[2]["uuid"]] == "Waiting in queue at position 1. All 2 vCPUs are in use."
    assert statuses[requests[3]["uuid"]] == "Waiting in queue at position 2. All 2 vCPUs are in use."
    most = 0
    while True:
        # One list call: a snapshot of all four from one database read.
        snapshot = ok(cluster.admin.get("/containers", params={"filters": json.dumps([["uuid", "in", uuids]])}))["items"]
        if all(c["state"] == "Complete" for c in snapshot):
            break
        running = sum(c["state"] in ("Locked", "Running") for c in snapshot)
        most = max(most, running)
        assert running <= 2, "more containers than vCPUs at once"
        assert time.monotonic() < deadline + 30
        time.sleep(0.05)
    assert most == 2


def test_containers_see_neither_the_servers_data_nor_the_dispatchers_token(running_cluster: Cluster) -> None:
    data_dir = running_cluster.root / "data"
    (data_dir / "admin-token").write_text(running_cluster.service.admin_token)
    script = f"cat {data_dir}/admin-token; ls {running_cluster.root / 'work'}; env"
    request = running_cluster.submit(command=["sh", "-c", script])
    container = running_cluster.wait_final(request["container_uuid"])
    files = running_cluster.log_files(container)
    output = files["stdout.txt"] + files["stderr.txt"]
    assert running_cluster.service.admin_token.encode() not in output
    assert b"CRUNCH_DISPATCH_TOKEN" not in output and b"CRUNCH_API_TOKEN" not in output
    assert b"No such file or directory" in files["stderr.txt"]
    assert lines(files["stdout.txt"])  # env printed something: the command did run


def test_memory_is_limited_and_nearly_full_memory_raises_a_warning(cluster: Cluster) -> None:
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller here: the local runtime falls back to an address-space rlimit")
    cluster.start_dispatcher("--crunchstat-interval", "0.2")
    limit = 100 << 20
    # tail keeps a line without a newline in memory: 96 MB held for 2 s, then 300 MB (killed).
    near = cluster.submit(command=["sh", "-c", "(head -c 96000000 /dev/zero; sleep 2) | tail > /dev/null"],
                          runtime_constraints={"vcpus": 1, "ram": limit})
    over = cluster.submit(command=["sh", "-c", "head -c 300000000 /dev/zero | tail > /dev/null"],
                          runtime_constraints={"vcpus": 1, "ram": limit})
    warned = cluster.wait_final(near["container_uuid"])
    assert warned["runtime_status"].get("warning") == "container using over 90% of memory"
    assert any(b"cgroup mem" in line for line in lines(cluster.log_files(warned)["crunchstat.txt"]))
    killed = cluster.wait_final(over["container_uuid"])
    assert killed["state"] == "Complete" and killed["exit_code"] != 0
    assert b"Killed" in cluster.log_files(killed)["stderr.txt"]


def test_cgroups_left_by_a_killed_crunch_run_are_swept(tmp_path: Path) -> None:
    from cwl_crunch.runner.runtimes import ProcessSpec
    from cwl_crunch.runner.runtimes.cgroups import CGROUP_ROOT
    from cwl_crunch.runner.runtimes.local import LocalRuntime

    require_bwrap()
    parent = CGROUP_ROOT / "memory" / "crunch"
    if not (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller here")
    stale, fresh = parent / "zzzzz-dz642-stalestalestale", parent / "zzzzz-dz642-freshfreshfresh"
    stale.mkdir(parents=True, exist_ok=True)
    fresh.mkdir(parents=True, exist_ok=True)
    old = time.time() - 120
    os.utime(stale, (old, old))
    spec = ProcessSpec(command=["true"], cwd="/", environment={"PATH": "/usr/bin:/bin"}, binds=[], ram=64 << 20,
                       name="zzzzz-dz642-sweepsweepsweep")
    runtime = LocalRuntime()
    try:
        assert runtime.start(spec).wait(10) == 0
        assert not stale.exists(), "a stale empty group is removed"
        assert fresh.exists(), "a young group may belong to a crunch-run still starting: kept"
    finally:
        runtime.cleanup(spec)
        for group in (stale, fresh):
            if group.exists():
                group.rmdir()
    assert not (parent / spec.name).exists()


def _memory_cgroups() -> int:
    """How many memory cgroups the kernel holds, removed ones still dying included."""
    for line in Path("/proc/cgroups").read_text().splitlines():
        if line.split()[0] == "memory":
            return int(line.split()[2])
    raise AssertionError("no memory controller")


def test_a_finished_containers_memory_cgroup_does_not_linger_dying(tmp_path: Path) -> None:
    """A removed memory cgroup that still has page cache charged (a file the container was the
    first to read) lives on until memory pressure; cleanup reclaims a small cache first."""
    from cwl_crunch.runner.runtimes import Bind, ProcessSpec
    from cwl_crunch.runner.runtimes.cgroups import CGROUP_ROOT
    from cwl_crunch.runner.runtimes.local import LocalRuntime

    require_bwrap()
    if not (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller here")
    data = tmp_path / "input.bin"
    data.write_bytes(os.urandom(4 << 20))
    with data.open("rb") as f:  # out of the page cache: the container's read brings it in, charged to it
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    spec = ProcessSpec(command=["cat", "/input.bin"], cwd="/", environment={"PATH": "/usr/bin:/bin"},
                       binds=[Bind(data, "/input.bin")], stdout=subprocess.DEVNULL, ram=256 << 20,
                       name="zzzzz-dz642-lingerlingerlin")
    before = _memory_cgroups()
    runtime = LocalRuntime()
    try:
        assert runtime.start(spec).wait(10) == 0
    finally:
        runtime.cleanup(spec)
    assert not (CGROUP_ROOT / "memory" / "crunch" / spec.name).exists()
    deadline = time.monotonic() + 5  # the kernel frees a removed group in the background
    while _memory_cgroups() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _memory_cgroups() <= before  # (others may have been freed meanwhile)
