"""`crunchctl status|cancel|hold|release|retry` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support.flows import cancel_running, commit, ok, run

COUNTERS = {"jobsComplete": 12, "jobsRunning": 3, "jobsWaiting": 5, "jobsFailed": 1}


def crunchctl(service: Any, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRUNCH_API": service.url, "CRUNCH_API_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "cwl_crunch.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _failing_workflow(service: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A runner whose step failed: its container Running with the error and counters."""
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    runner = commit(alice, name="wordcount", command=["runner"], runtime_constraints={"API": True})
    steps = service.client(run(admin, runner["container_uuid"])["auth"])
    step = commit(steps, name="count", command=["step"])
    ok(admin.put(f"/containers/{runner['container_uuid']}",
                 json={"runtime_status": {"error": "step count failed (1 additional errors)", **COUNTERS}}))
    return token, runner, step


def test_status_lists_runs_with_their_error_and_counters_but_not_their_steps(service):
    token, runner, step = _failing_workflow(service)
    quiet = commit(service.client(token), name="quiet one", command=["echo"])

    done = crunchctl(service, token, "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["UUID", "STATUS", "AGE", "NAME", "PROGRESS"]
    row = next(line for line in lines if line.startswith(runner["uuid"]))
    assert "Failing" in row and "wordcount" in row and "12 complete · 3 running · 5 waiting · 1 failed" in row
    assert lines[lines.index(row) + 1].strip() == "└ error: step count failed (1 additional errors)"
    assert any(line.startswith(quiet["uuid"]) and "Queued" in line for line in lines)
    assert step["uuid"] not in done.stdout, "steps show under their run, not in the list"


def test_status_of_one_run_shows_the_error_first_and_its_steps(service):
    token, runner, step = _failing_workflow(service)
    done = crunchctl(service, token, "status", runner["uuid"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1:3] == ["Status:     Failing", "Error:      step count failed (1 additional errors)"]
    assert "Progress:   12 complete · 3 running · 5 waiting · 1 failed" in lines
    assert any(line.startswith("Container:") and "Running" in line and "attempt 1 of" in line for line in lines)
    assert "Steps (1):" in lines
    assert any(line.startswith(step["uuid"]) and "Queued" in line and "count" in line for line in lines)


def test_status_json_holds_what_the_table_shows(service):
    token, runner, step = _failing_workflow(service)
    one = json.loads(crunchctl(service, token, "status", "--json", runner["uuid"]).stdout)
    assert (one["status"], one["error"], one["progress"]) == (
        "Failing", "step count failed (1 additional errors)", "12 complete · 3 running · 5 waiting · 1 failed")
    assert [child["uuid"] for child in one["children"]] == [step["uuid"]]
    listed = json.loads(crunchctl(service, token, "status", "--json").stdout)
    assert [r["uuid"] for r in listed] == [runner["uuid"]]


def test_hold_release_cancel_and_retry_change_the_request(service):
    token = service.token("alice")
    alice = service.client(token)
    request = commit(alice, command=["sleep", "1"])
    uuid = request["uuid"]

    assert crunchctl(service, token, "hold", uuid).returncode == 0
    assert ok(alice.get(f"/container_requests/{uuid}"))["status"] == "On hold"
    assert "Scheduling: On hold." in crunchctl(service, token, "status", uuid).stdout
    assert crunchctl(service, token, "release", uuid).returncode == 0
    assert ok(alice.get(f"/container_requests/{uuid}"))["status"] == "Queued"

    cancelled = crunchctl(service, token, "cancel", uuid)
    assert cancelled.returncode == 0 and f"{uuid}: Cancelled" in cancelled.stderr
    retried = crunchctl(service, token, "retry", uuid)
    assert retried.returncode == 0, retried.stderr
    new_uuid = retried.stdout.strip()
    assert ok(alice.get(f"/container_requests/{new_uuid}"))["properties"]["retry_of"] == uuid


def test_refusals_and_missing_settings_are_clear_errors(service):
    token = service.token("alice")
    alice, admin = service.client(token), service.admin()
    request = commit(alice, command=["sleep", "1"])
    run(admin, request["container_uuid"])
    refused = crunchctl(service, token, "hold", request["uuid"])
    assert refused.returncode == 1 and refused.stderr.startswith("crunchctl hold: ") and "422" in refused.stderr
    cancel_running(admin, request["container_uuid"])
    unknown = crunchctl(service, token, "status", "zzzzz-xvhdo-000000000000000")
    assert unknown.returncode == 1 and "404" in unknown.stderr
    no_api = subprocess.run([sys.executable, "-m", "cwl_crunch.cli.main", "status"], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("CRUNCH_")}, timeout=60)
    assert no_api.returncode == 2 and "--api and --token" in no_api.stderr
