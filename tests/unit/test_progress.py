"""A runner's aggregation of its children (SPEC §10), by value."""

from __future__ import annotations

from cwl_crunch.domain.progress import ChildState, Progress, child_state, error_text


def test_counters_follow_each_child_to_its_final_state() -> None:
    progress = Progress()
    for uuid in ("a", "b", "c"):
        progress.update(uuid, ChildState.WAITING)
    progress.update("a", child_state("Running"))
    progress.update("b", child_state("Locked"))
    assert progress.counters() == {"jobsWaiting": 2, "jobsRunning": 1, "jobsComplete": 0, "jobsFailed": 0}
    progress.update("a", ChildState.COMPLETE)
    assert not progress.update("a", ChildState.RUNNING), "a finished child stays finished"
    assert progress.counters()["jobsComplete"] == 1
    assert progress.summary() == "1 complete · 0 running · 2 waiting · 0 failed"


def test_the_first_error_never_changes_and_later_ones_are_counted() -> None:
    progress = Progress()
    assert progress.fail("x", "step one (x) failed: exit code 3", "bad input")
    assert not progress.fail("y", "step two (y) failed: exit code 1")
    assert not progress.fail("y", "step two (y) failed: exit code 1"), "the same child is not counted twice"
    status = progress.runtime_status("workflow execution")
    assert status["error"] == "step one (x) failed: exit code 3 (1 additional errors)"
    assert status["errorDetail"] == "bad input"
    assert status["jobsFailed"] == 2 and status["activity"] == "workflow execution"
    assert progress.running() == []


def test_no_error_key_until_something_fails() -> None:
    status = Progress().runtime_status("initialization")
    assert "error" not in status and "errorDetail" not in status
    assert error_text("first", 1) == "first"
    assert error_text("first", 4) == "first (3 additional errors)"
