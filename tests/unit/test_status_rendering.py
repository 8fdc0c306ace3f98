"""`crunchctl status` rendering, by value."""

from __future__ import annotations

from datetime import datetime, timezone

from cwl_crunch.cli.status import age, render_run, render_table
from cwl_crunch.domain.progress import counters_text

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _run(**overrides):
    return {"uuid": "zzzzz-xvhdo-aaaaaaaaaaaaaaa", "name": "wordcount", "status": "Running",
            "created_at": "2026-11-22T11:55:00Z", "progress": None, "error": None, "warning": None,
            "activity": None, **overrides}


def test_counters_read_in_a_fixed_order_and_only_for_runners():
    assert counters_text({"jobsFailed": 1, "jobsComplete": 12, "jobsRunning": 3, "jobsWaiting": 5}) == (
        "12 complete · 3 running · 5 waiting · 1 failed")
    assert counters_text({"jobsComplete": 2}) == "2 complete · 0 running · 0 waiting · 0 failed"
    assert counters_text({"activity": "running"}) is None and counters_text(None) is None


def test_ages_use_the_largest_whole_unit():
    assert [age(t, NOW) for t in ("2026-11-22T11:59:18Z", "2026-11-22T11:55:00Z", "2026-11-22T09:00:00Z",
                                  "2026-11-20T11:00:00Z", "2026-11-22T12:00:05Z")] == ["42s", "5m", "3h", "2d", "0s"]


def test_the_table_aligns_columns_and_puts_a_runs_error_or_warning_under_it():
    text = render_table([_run(status="Failing", error="step failed", warning="ignored"),
                         _run(uuid="zzzzz-xvhdo-bbbbbbbbbbbbbbb", name="", status="Warning", warning="slow")], NOW)
    assert text.splitlines() == [
        "UUID                         STATUS   AGE  NAME       PROGRESS",
        "zzzzz-xvhdo-aaaaaaaaaaaaaaa  Failing  5m   wordcount",
        "                             └ error: step failed",
        "zzzzz-xvhdo-bbbbbbbbbbbbbbb  Warning  5m",
        "                             └ warning: slow",
    ]
    assert render_table([], NOW) == "no runs\n"


def test_one_run_leaves_out_what_it_does_not_have():
    text = render_run({**_run(), "scheduling_status": "In slurm queue: job 7 pending (Resources).",
                       "container": None, "children": []}, NOW)
    assert text.splitlines() == [
        "Request:    zzzzz-xvhdo-aaaaaaaaaaaaaaa  wordcount",
        "Status:     Running",
        "Scheduling: In slurm queue: job 7 pending (Resources).",
        "Created:    2026-11-22T11:55:00Z (5m ago)",
    ]
