"""Read cwltest's JUnit XML and log into per-test results; summaries and baselines."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"
EXIT_RE = re.compile(r"returned non-zero exit status (-?\d+)")
# cwltest logs this line (one write per line, so atomic under -j) for every failing test number.
FAILED_LINE_RE = re.compile(r"^Test (\d+) failed: ", re.MULTILINE)


def short_id(test_id: str) -> str:
    """Return a test's short id: the last segment of its (resolved) id URI."""
    return [part for part in re.split("[/#]", test_id) if part][-1]


def _reason(message: str) -> str:
    """Classify a cwltest failure message into a short reason."""
    if message.startswith("Test timed out"):
        return "timeout"
    match = EXIT_RE.search(message)
    if match:
        code = int(match.group(1))
        if code == 33:
            return "exit 33 (unsupported) on a required test"
        return f"exit {code}"
    if message.startswith("Output is not a valid JSON"):
        return "stdout is not a JSON object"
    return "output differs from the expected output"


def parse_junit(path: Path) -> dict[str, dict]:
    """Map each test id in a cwltest JUnit XML file to its status, reason and message."""
    results: dict[str, dict] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = case.get("file") or case.get("name", "?")
        entry = {"status": PASSED, "time": round(float(case.get("time") or 0), 2)}
        failure = case.find("failure")
        if failure is not None:
            message = (failure.text or failure.get("message") or "").strip()
            entry.update(status=FAILED, reason=_reason(message), message=message[:2000])
            stderr = (case.findtext("system-err") or "").strip()
            if stderr:
                entry["stderr_tail"] = stderr[-1500:]
        elif case.find("skipped") is not None:
            entry.update(status=UNSUPPORTED, reason="exit 33 (unsupported feature)")
        results[test_id] = entry
    return results


def fix_should_fail(results: dict[str, dict], tests: list[dict], log_text: str) -> list[str]:
    """Mark should_fail tests that ran to success as failed; return their ids.

    cwltest records them with an empty failure message, which junit_xml drops: the XML says passed.
    """
    failed_numbers = {int(n) for n in FAILED_LINE_RE.findall(log_text)}
    fixed = []
    for number, test in enumerate(tests, start=1):
        entry = results.get(test["short_id"])
        if test.get("should_fail") and number in failed_numbers and entry and entry["status"] == PASSED:
            entry.update(status=FAILED, reason="succeeded but the test expects a failure")
            fixed.append(test["short_id"])
    return fixed


def patch_junit(path: Path, ids: list[str]) -> None:
    """Add the failure element cwltest left out for these tests (see fix_should_fail)."""
    if not ids:
        return
    tree = ET.parse(path)
    root = tree.getroot()
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            if case.get("file") in ids:
                failure = ET.Element("failure", {"type": "failure", "message": "succeeded but should fail"})
                case.insert(0, failure)
                for element in {root, suite}:
                    element.set("failures", str(int(element.get("failures", "0")) + 1))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def summarize(results: dict[str, dict], tests: list[dict], meta: dict) -> dict:
    """Build the summary.json document from per-test results."""
    tags = {t["short_id"]: t.get("tags", []) for t in tests}
    for test_id, entry in results.items():
        entry["tags"] = tags.get(test_id, [])
    missing = [t["short_id"] for t in tests if t["short_id"] not in results]
    for test_id in missing:
        results[test_id] = {"status": FAILED, "reason": "no result in the JUnit XML", "tags": tags[test_id]}

    def listed(status: str) -> list[dict]:
        return [
            {"id": i, "tags": e["tags"], "reason": e.get("reason", "")}
            for i, e in results.items()
            if e["status"] == status
        ]

    counts = {s: sum(1 for e in results.values() if e["status"] == s) for s in (PASSED, FAILED, UNSUPPORTED)}
    return {
        **meta,
        **counts,
        "total": len(results),
        "failing": listed(FAILED),
        "unsupported_tests": listed(UNSUPPORTED),
        "results": results,
    }


def print_summary(summary: dict) -> None:
    """Print counts and the failing and unsupported tests."""
    print(
        f"\n{summary['suite_name']} with {summary['tool_command']}: "
        f"{summary['total']} tests in {summary['duration_s'] // 60:.0f}m{summary['duration_s'] % 60:02.0f}s"
    )
    for key in ("passed", "failed", "unsupported", "total"):
        print(f"  {key:<12}{summary[key]:>5}")
    for title, key in (("Failing", "failing"), ("Unsupported", "unsupported_tests")):
        if summary[key]:
            print(f"{title}:")
            width = max(len(e["id"]) for e in summary[key])
            for e in summary[key]:
                print(f"  {e['id']:<{width}}  [{', '.join(e['tags'])}]  {e['reason']}")


def compare_baseline(summary: dict, baseline: dict, partial: bool) -> list[str]:
    """Return the problems found comparing a run with a baseline (empty when it holds)."""
    problems = []
    results = summary["results"]
    if partial:
        print(f"baseline: partial run, only the {len(results)} tests that ran are compared")
    elif summary["passed"] < baseline["passed"]:
        problems.append(f"{summary['passed']} tests pass, below the baseline's {baseline['passed']}")
    regressed = [i for i in baseline["passing"] if i in results and results[i]["status"] != PASSED]
    for test_id in regressed:
        entry = results[test_id]
        problems.append(f"{test_id} passed in the baseline, now {entry['status']}: {entry.get('reason', '')}")
    newly = sorted(i for i, e in results.items() if e["status"] == PASSED and i not in baseline["passing"])
    if newly:
        print(f"baseline: {len(newly)} tests pass that the baseline does not list: {', '.join(newly)}")
        print("baseline: run with --write-baseline to record them")
    return problems


def baseline_document(summary: dict) -> dict:
    """Build a baseline from a full run's summary (no machine paths in it)."""
    results = summary["results"]
    return {
        "suite": summary["suite_name"],
        "suite_upstream": summary.get("suite_upstream", ""),
        "tool": summary["tool_name"],
        "tool_command": summary.get("tool_command", summary["tool_name"]),
        "passed": summary["passed"],
        "total": summary["total"],
        "passing": sorted(i for i, e in results.items() if e["status"] == PASSED),
        "failing": sorted(i for i, e in results.items() if e["status"] == FAILED),
        "unsupported": sorted(i for i, e in results.items() if e["status"] == UNSUPPORTED),
    }


def read_json(path: Path) -> dict:
    """Read a JSON document."""
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, document: dict) -> None:
    """Write a JSON document, indented, with a final newline."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
