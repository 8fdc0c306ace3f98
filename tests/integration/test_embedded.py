"""The embedded local service (SPEC §1): real daemons (`crunchctl local-service start`) on temporary
data directories, started through `cwl_crunch.embedded` as `cwl-crunch` starts them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cwl_crunch import embedded
from tests.support.engines import bwrap_unavailable, require
from tests.support.flows import ok
from tests.support.service import request_body

pytestmark = pytest.mark.slow

_START_ONE = "import sys; from cwl_crunch.embedded import ensure_running; print(ensure_running(sys.argv[1]).api_url)"


def _daemons(data_dir: Path) -> list[int]:
    """Live `local-service` processes of `data_dir` (whoever started them)."""
    return [pid for pid, command in _processes_of(data_dir) if "local-service" in command]


def _processes_of(data_dir: Path) -> list[tuple[int, list[str]]]:
    """Live processes whose command line names `data_dir`: the daemon, its dispatcher."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if str(data_dir) in command and embedded.process_start(int(entry.name)):
                found.append((int(entry.name), command))
    return found


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = (tmp_path / "data").resolve()
    try:
        yield path
    finally:
        embedded.stop(path)
        for pid, _ in _processes_of(path):  # a test that failed half-way may have left more
            embedded.terminate(pid, 5.0)


def _api(service: embedded.Service) -> httpx.Client:
    return httpx.Client(base_url=service.api_url + "/arvados/v1",
                        headers={"Authorization": f"Bearer {service.token}"}, timeout=30)


def _record(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / embedded.RECORD).read_text())


def _crunchctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cwl_crunch.cli.main", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_start_then_the_fast_path_finds_the_same_daemon(data_dir: Path) -> None:
    service = embedded.ensure_running(data_dir)
    record = _record(data_dir)
    assert service.api_url == record["api_url"] and service.api_url.startswith("http://127.0.0.1:")
    assert (service.data_dir, service.blob_root) == (data_dir, data_dir / "blobs")
    assert data_dir.stat().st_mode & 0o777 == 0o700
    for name in (embedded.RECORD, embedded.USER_TOKEN, "admin-token"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    with _api(service) as api:
        assert ok(api.get("/users/current"))["is_admin"] is False  # the runner's token is not the dispatcher's

    again = embedded.ensure_running(data_dir)
    assert again == service
    assert _record(data_dir)["pid"] == record["pid"]
    assert _daemons(data_dir) == [record["pid"]]

    status = _crunchctl("local-service", "--data-dir", str(data_dir), "status")
    assert status.returncode == 0, status.stderr
    assert f"dashboard: {service.api_url}/?token={service.token}" in status.stdout.splitlines()


def test_concurrent_starts_share_one_daemon(data_dir: Path) -> None:
    starters = [subprocess.Popen([sys.executable, "-c", _START_ONE, str(data_dir)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    answers = []
    for starter in starters:
        out, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err
        answers.append(out.strip())
    assert len(set(answers)) == 1, answers
    assert answers[0] == _record(data_dir)["api_url"]
    assert _daemons(data_dir) == [_record(data_dir)["pid"]]


def test_a_start_in_the_background_is_waited_for_not_repeated(data_dir: Path) -> None:
    spawned = len(embedded._spawned)
    embedded.start_in_background(data_dir)
    service = embedded.ensure_running(data_dir)
    assert len(embedded._spawned) == spawned + 1  # the background thread's daemon, found again
    assert service.api_url == _record(data_dir)["api_url"]
    assert _daemons(data_dir) == [_record(data_dir)["pid"]]


def test_a_failed_background_start_is_tried_again_and_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    embedded.start_in_background(blocker / "data")
    with pytest.raises(NotADirectoryError):
        embedded.ensure_running(blocker / "data")


_PROBE = """
import sys
from pathlib import Path
from cwl_crunch import embedded

class FirstImportOfCwltool:
    def find_spec(self, name, path=None, target=None):
        if name == "cwltool":
            sys.meta_path.remove(self)
            starting = Path(sys.argv[2]).resolve() in embedded._starting
            print(f"service starting when cwltool was imported: {starting}", file=sys.stderr, flush=True)
        return None

sys.meta_path.insert(0, FirstImportOfCwltool())
sys.argv = ["cwl-crunch", *sys.argv[1:]]
from cwl_crunch.cwl.entry import command
command()
"""


def test_the_command_starts_the_service_before_importing_cwltool(data_dir: Path, tmp_path: Path) -> None:
    """What the `cwl-crunch` console script runs: the service is on its way before the client's
    imports (cwltool) and the workflow's load, and the run then uses it."""
    require(bwrap_unavailable())
    examples = Path(__file__).resolve().parents[2] / "examples"
    done = subprocess.run([sys.executable, "-c", _PROBE, "--data-dir", str(data_dir), "--outdir", str(tmp_path / "out"),
                           str(examples / "hello.cwl"), str(examples / "hello.yml")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "service starting when cwltool was imported: True" in done.stderr.splitlines()
    assert json.loads(done.stdout)["greeting"]["basename"] == "hello-cwl-crunch.txt"
    assert (tmp_path / "out" / "hello-cwl-crunch.txt").read_text() == "Hello, cwl-crunch!\n"
    assert _daemons(data_dir) == [_record(data_dir)["pid"]]


def test_a_killed_daemon_is_replaced_and_its_dispatcher_stopped(data_dir: Path) -> None:
    first = embedded.ensure_running(data_dir)
    old = _record(data_dir)
    os.kill(old["pid"], signal.SIGKILL)  # its dispatcher lives on, orphaned
    with contextlib.suppress(ChildProcessError):
        os.waitpid(old["pid"], 0)  # this test process started it: reap it
    assert embedded.process_start(old["dispatcher"]["pid"]) == old["dispatcher"]["start"]

    second = embedded.ensure_running(data_dir)
    new = _record(data_dir)
    assert new["pid"] != old["pid"]
    assert embedded.process_start(old["dispatcher"]["pid"]) != old["dispatcher"]["start"]
    assert second.token == first.token  # the user's token survives restarts
    with _api(second) as api:
        ok(api.get("/users/current"))
    assert _daemons(data_dir) == [new["pid"]]


def test_a_record_naming_a_dead_process_is_replaced(data_dir: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    embedded.make_private_dir(data_dir)
    (data_dir / embedded.RECORD).write_text(json.dumps({"pid": dead.pid, "api_url": "http://127.0.0.1:9"}))
    service = embedded.ensure_running(data_dir)
    assert _record(data_dir)["pid"] != dead.pid
    assert service.api_url != "http://127.0.0.1:9"


def test_the_daemon_does_not_keep_the_temporary_directory_of_the_command_that_started_it(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """That command's TMPDIR may be removed when it ends; the daemon, its dispatcher and their
    crunch-runs live on (a container engine then fails on every command)."""
    passing = tmp_path / "tmp-of-the-first-command"
    passing.mkdir()
    monkeypatch.setenv("TMPDIR", str(passing))
    monkeypatch.setenv("CRUNCH_TEST_MARK", "inherited")
    embedded.ensure_running(data_dir)
    processes = _processes_of(data_dir)
    assert len(processes) == 2  # the daemon and its dispatcher
    for pid, _ in processes:
        environment = dict(entry.split("=", 1) for entry in
                           Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in entry)
        assert "TMPDIR" not in environment
        assert environment["CRUNCH_TEST_MARK"] == "inherited"  # the rest is passed on


def test_stop(data_dir: Path) -> None:
    embedded.ensure_running(data_dir)
    record = _record(data_dir)
    assert embedded.stop(data_dir) is True
    assert not (data_dir / embedded.RECORD).exists()
    assert embedded.process_start(record["pid"]) == ""
    assert embedded.process_start(record["dispatcher"]["pid"]) != record["dispatcher"]["start"]
    assert embedded.running(data_dir) is None
    assert embedded.stop(data_dir) is False
    assert _crunchctl("local-service", "--data-dir", str(data_dir), "status").returncode == 3
    assert "stopped" in (data_dir / embedded.LOG).read_text().splitlines()[-1]


def test_a_container_request_runs_to_completion(data_dir: Path) -> None:
    require(bwrap_unavailable())
    service = embedded.ensure_running(data_dir)
    with _api(service) as api:
        hello, stdout = _run(api, ["sh", "-c", "echo hi"])
        assert (hello["state"], hello["exit_code"]) == ("Complete", 0), hello
        assert stdout.endswith(b" hi\n")
        # The data directory (tokens, database) is hidden from containers. This one lies under
        # /tmp, which a container sees as its own, private /tmp: it is not there at all.
        peek, stdout = _run(api, ["find", str(data_dir), "-mindepth", "1"])
        assert (peek["state"], peek["exit_code"]) == ("Complete", 1), peek
        assert stdout == b""


def test_a_data_directory_outside_tmp_is_masked_from_containers() -> None:
    """Elsewhere (the default is under ~/.local/share) an empty tmpfs covers the data directory,
    holding only the mount point of the (also hidden) work root."""
    require(bwrap_unavailable())
    data_dir = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="cwl-crunch-test-")) / "data"
    try:
        with _api(embedded.ensure_running(data_dir)) as api:
            peek, stdout = _run(api, ["find", str(data_dir), "-mindepth", "1"])
        assert (peek["state"], peek["exit_code"]) == ("Complete", 0), peek
        assert [line.split(b" ", 1)[1] for line in stdout.splitlines()] == [str(data_dir / "work").encode()]
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_stopping_cancels_running_containers_for_a_retry(data_dir: Path) -> None:
    require(bwrap_unavailable())
    with _api(embedded.ensure_running(data_dir)) as api:
        request = ok(api.post("/container_requests", json=request_body(command=["sleep", "60"])))
        _wait(api, request["container_uuid"], lambda c: c["state"] == "Running")
    # As in test_execution: a SIGTERM within milliseconds of the process starting can orphan
    # bubblewrap's inner half (it has no parent-death signal yet), which crunch-run then waits for.
    time.sleep(0.5)
    started = time.monotonic()
    assert embedded.stop(data_dir)
    assert time.monotonic() - started < 30
    with _api(embedded.ensure_running(data_dir)) as api:
        container = ok(api.get(f"/containers/{request['container_uuid']}"))
    assert container["state"] == "Cancelled"
    assert container["runtime_status"].get("cause") == "infrastructure", container["runtime_status"]


def _run(api: httpx.Client, command: list[str]) -> tuple[dict[str, Any], bytes]:
    """Run `command` in a container as the runner would: its final record and its stdout.txt."""
    request = ok(api.post("/container_requests", json=request_body(command=command)))
    uuid = request["container_uuid"]
    container = _wait(api, uuid, lambda c: c["state"] in ("Complete", "Cancelled"))
    response = api.get(f"/container_requests/{request['uuid']}/log/{uuid}/stdout.txt")
    assert response.status_code == 200, response.text
    return container, response.content


def _wait(api: httpx.Client, uuid: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        container = ok(api.get(f"/containers/{uuid}"))
        if done(container):
            return container
        assert time.monotonic() < deadline, f"{uuid} still {container['state']} after {timeout} s"
        time.sleep(0.05)


def test_a_daemon_that_cannot_start_is_reported_with_its_log(data_dir: Path) -> None:
    embedded.make_private_dir(data_dir)
    (data_dir / "database-url").write_text("sqlite:////nonexistent-directory/crunch.sqlite3\n")
    with pytest.raises(embedded.ServiceError, match="exited with status 1") as raised:
        embedded.ensure_running(data_dir, timeout=60)
    assert "unable to open database file" in str(raised.value)  # the daemon's log, in the message


def _gone_within(data_dir: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while embedded.daemon_pid(data_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_an_idle_daemon_stops_and_the_next_caller_starts_another(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUNCH_LOCAL_IDLE_MINUTES", "0.1")  # 6 s, beyond the dispatcher's 5 s pings
    first = embedded.ensure_running(data_dir)
    pid = _record(data_dir)["pid"]
    assert _gone_within(data_dir, 30), "still running"
    assert not _processes_of(data_dir), "its dispatcher went too"
    assert "no work and no callers for 0.1 min: stopping" in (data_dir / embedded.LOG).read_text()
    assert not (data_dir / embedded.RECORD).exists()
    again = embedded.ensure_running(data_dir)
    assert _record(data_dir)["pid"] != pid
    with _api(again) as api:  # the same database: the user's token still works
        assert ok(api.get("/users/current"))["uuid"] and again.token == first.token


def test_work_and_callers_keep_the_daemon_running(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(bwrap_unavailable())
    monkeypatch.setenv("CRUNCH_LOCAL_IDLE_MINUTES", "0.05")  # 3 s
    with _api(embedded.ensure_running(data_dir)) as api:
        request = ok(api.post("/container_requests", json=request_body(command=["sleep", "60"])))
        _wait(api, request["container_uuid"], lambda c: c["state"] == "Running")
    time.sleep(6)
    assert embedded.running(data_dir) is not None, "stopped with a container running"
    with _api(embedded.ensure_running(data_dir)) as api:
        ok(api.put(f"/container_requests/{request['uuid']}", json={"priority": 0}))
        _wait(api, request["container_uuid"], lambda c: c["state"] == "Cancelled")
        for _ in range(6):  # a caller: 6 s of requests, each within the idle time of the last
            ok(api.get("/users/current"))
            time.sleep(1)
        assert embedded.daemon_pid(data_dir) is not None, "stopped while called"
    assert _gone_within(data_dir, 30)
