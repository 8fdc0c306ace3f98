"""conformance/report.py: a baseline written from a run's summary, and a later run held to it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("conformance_report", Path(__file__).parents[2] / "conformance" / "report.py")
assert _SPEC is not None and _SPEC.loader is not None
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)

TESTS = [{"short_id": "a", "tags": ["required"]}, {"short_id": "b", "tags": ["docker"]}, {"short_id": "c", "tags": []}]


def _summary(statuses: dict[str, str], command: str = "cwl-crunch --engine podman") -> dict:
    results = {test_id: {"status": status, "reason": "" if status == "passed" else "exit 1"}
               for test_id, status in statuses.items()}
    meta = {"suite_name": "cwl-v1.2", "suite_upstream": "", "tool_name": "cwl-crunch", "tool_command": command}
    return report.summarize(results, TESTS, meta)


def test_a_baseline_records_the_runner_command_and_each_test_by_status() -> None:
    document = report.baseline_document(_summary({"a": "passed", "b": "unsupported", "c": "failed"}))
    assert document["tool_command"] == "cwl-crunch --engine podman"
    assert (document["passed"], document["total"]) == (1, 3)
    assert (document["passing"], document["failing"], document["unsupported"]) == (["a"], ["c"], ["b"])


def test_a_run_holds_to_its_baseline_only_when_every_listed_test_still_passes() -> None:
    baseline = report.baseline_document(_summary({"a": "passed", "b": "passed", "c": "failed"}))
    assert report.compare_baseline(_summary({"a": "passed", "b": "passed", "c": "passed"}), baseline, False) == []
    problems = report.compare_baseline(_summary({"a": "passed", "b": "unsupported", "c": "passed"}), baseline, False)
    assert problems == ["b passed in the baseline, now unsupported: exit 1"]
    fewer = report.compare_baseline(_summary({"a": "passed", "b": "failed", "c": "failed"}), baseline, False)
    assert fewer[0] == "1 tests pass, below the baseline's 2" and len(fewer) == 2
