#!/usr/bin/env python3
"""Run the CWL v1.2 conformance suite with cwltest and summarize it, optionally against a baseline."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import report as res

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin directory (not resolved: that would leave the venv)
DEFAULT_SUITE = REPO.parent / "shared" / "cwl-v1.2"
SUITE_FILE = "conformance_tests.yaml"
RANGES_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
# Run by cwltest's own interpreter: dump the suite's tests (with $import resolved) as JSON.
LOADER = (
    "import json, sys\n"
    "import cwltest.utils as u\n"
    "clean = u._clean_ruamel\n"  # it turns booleans into ints; should_fail must stay a boolean
    "u._clean_ruamel = lambda o: o if isinstance(o, bool) else clean(o)\n"
    "tests, _ = u.load_and_validate_tests(sys.argv[1])\n"
    "open(sys.argv[2], 'w').write(json.dumps(tests))\n"
)


class SetupError(Exception):
    """A problem with the arguments or the environment, reported without a traceback."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line; tool arguments come after `--`."""
    tool_args: list[str] = []
    if "--" in argv:
        tool_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__, usage="%(prog)s [options] [-- TOOL_ARGS...]")
    p.add_argument("--tool", default="cwl-crunch", help="runner to test (default: cwl-crunch next to this Python)")
    p.add_argument("--suite", type=Path, help=f"CWL v1.2 suite directory (default: {DEFAULT_SUITE.name} in ../shared)")
    p.add_argument("-j", type=int, default=2, help="tests run at once (default 2)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per test before it fails (default 300)")
    p.add_argument("--tags", help="only tests with any of these comma-separated tags")
    p.add_argument("--exclude-tags", help="leave out tests with any of these comma-separated tags")
    p.add_argument("-n", help="only these test numbers (as printed by -l), e.g. 1,3-6,9")
    p.add_argument("-s", "--ids", help="only these comma-separated test ids")
    p.add_argument("-l", "--list", action="store_true", help="list the selected tests and exit")
    p.add_argument("--output", type=Path, default=REPO / "conformance" / "results", help="output directory")
    p.add_argument("--baseline", type=Path, help="compare with this baseline; exit 1 on a regression")
    p.add_argument("--write-baseline", action="store_true", help="write the run's results to --baseline")
    p.add_argument("--keep-tmp", action="store_true", help="keep the per-test temporary directories")
    p.add_argument("-q", "--quiet", action="store_true", help="do not echo cwltest's progress")
    args = p.parse_args(argv)
    args.tool_args = tool_args
    if args.write_baseline and not args.baseline:
        args.baseline = REPO / "conformance" / "baseline.json"
    if args.n and not RANGES_RE.match(args.n):
        p.error(f"-n {args.n!r}: expected numbers and ranges such as 1,3-6,9")
    return args


def find_executable(name: str) -> Path:
    """Find a program: a path as given, else next to this Python, else on PATH."""
    if os.sep in name:
        path = Path(name).resolve()
    elif (BIN / name).is_file():
        path = BIN / name
    else:
        found = shutil.which(name)
        if not found:
            raise SetupError(f"{name} not found next to {sys.executable} nor on PATH")
        path = Path(found)
    if not os.access(path, os.X_OK):
        raise SetupError(f"{path} is not an executable")
    return path


def find_tool(name: str) -> Path:
    """Find the runner under test; the default is the venv's cwl-crunch script."""
    if name != "cwl-crunch":
        return find_executable(name)
    if not (BIN / name).is_file():
        raise SetupError(
            f"cwl-crunch is not installed next to {sys.executable}: "
            "install the package (pip install -e .) or pass --tool"
        )
    return BIN / name


def find_suite(suite: Path | None) -> Path:
    """Return the suite directory, checking that it holds the conformance test list."""
    suite = (suite or DEFAULT_SUITE).resolve()
    if not (suite / SUITE_FILE).is_file():
        raise SetupError(
            f"no CWL v1.2 conformance suite at {suite} (expected {SUITE_FILE} there): "
            "pass --suite DIR, a checkout of https://github.com/common-workflow-language/cwl-v1.2"
        )
    return suite


def script_python(script: Path) -> str:
    """Return the interpreter a Python console script runs with (its shebang), else this one."""
    first = script.read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith("#!") and "python" in first and " " not in first[2:].strip():
        return first[2:].strip()
    return sys.executable


def load_tests(cwltest: Path, suite_file: Path, output: Path) -> list[dict]:
    """Load the suite's tests through cwltest's own loader, adding short ids."""
    dump = output / "tests.json"
    proc = subprocess.run(
        [script_python(cwltest), "-c", LOADER, str(suite_file), str(dump)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SetupError(f"cwltest could not load {suite_file}:\n{proc.stderr}")
    tests = json.loads(dump.read_text(encoding="utf-8"))
    dump.unlink()
    for test in tests:
        test.pop("line", None)
        test["short_id"] = res.short_id(str(test.get("id", "")))
    return tests


def expand_ranges(spec: str) -> list[int]:
    """Expand "1,3-6" into [1, 3, 4, 5, 6]."""
    numbers: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


def select(tests: list[dict], args: argparse.Namespace) -> list[dict]:
    """Apply --tags, --exclude-tags, -n and --ids, in that order, as cwltest numbers them."""
    if args.tags:
        wanted = set(args.tags.split(","))
        tests = [t for t in tests if wanted & set(t.get("tags", []))]
    if args.exclude_tags:
        unwanted = set(args.exclude_tags.split(","))
        tests = [t for t in tests if not unwanted & set(t.get("tags", []))]
    if args.n or args.ids:
        chosen: set[int] = set()
        if args.n:
            chosen |= {n - 1 for n in expand_ranges(args.n) if 0 < n <= len(tests)}
        if args.ids:
            index = {t["short_id"]: i for i, t in enumerate(tests)}
            unknown = [i for i in args.ids.split(",") if i not in index]
            if unknown:
                raise SetupError(f"no such test ids (after tag selection): {', '.join(unknown)}")
            chosen |= {index[i] for i in args.ids.split(",")}
        tests = [t for i, t in enumerate(tests) if i in chosen]
    if not tests:
        raise SetupError("the selection matches no tests")
    return tests


def write_test_file(tests: list[dict], path: Path) -> None:
    """Write a selection as a cwltest test file (JSON is YAML; tool and job URIs are absolute).

    Not ASCII-escaped: a YAML parser reads the JSON escape of a character outside the BMP (a
    surrogate pair, e.g. the emoji in `inputBinding_position_expr`) as two lone surrogates, and
    the expected output would then never match."""
    keep = [{k: v for k, v in t.items() if k != "short_id"} for t in tests]
    path.write_text(json.dumps(keep, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run_cwltest(cmd: list[str], cwd: Path, env: dict, log: Path, quiet: bool) -> int:
    """Run cwltest, copying its output into the log (and to stderr unless quiet)."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if not quiet and line.strip():  # cwltest ends progress lines with a blank line
                    sys.stderr.write(line)
        except KeyboardInterrupt:
            proc.wait(timeout=60)
            raise
        return proc.wait()


def main(argv: list[str]) -> int:
    """Run the suite, write the results, compare with or write the baseline."""
    args = parse_args(argv)
    suite = find_suite(args.suite)
    cwltest = find_executable("cwltest")
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    all_tests = load_tests(cwltest, suite / SUITE_FILE, output)
    tests = select(all_tests, args)
    partial = len(tests) != len(all_tests)
    if args.list:
        width = len(str(len(tests)))
        for number, test in enumerate(tests, start=1):
            print(f"[{number:>{width}}] {test['short_id']}  [{', '.join(test.get('tags', []))}]")
        return 0
    if args.write_baseline and partial:
        raise SetupError("--write-baseline needs a full run: drop --tags, --exclude-tags, -n and --ids")
    if args.baseline and not args.write_baseline and not args.baseline.is_file():
        raise SetupError(f"no baseline at {args.baseline} (create it with --write-baseline)")
    tool = find_tool(args.tool)

    junit, badges, log, tmp = output / "junit.xml", output / "badges", output / "cwltest.log", output / "tmp"
    for stale in (junit, output / "summary.json", output / "selected-tests.json"):
        stale.unlink(missing_ok=True)
    test_file = suite / SUITE_FILE
    if partial:  # cwltest mislabels results run with its -n/-s, so run a file of just these tests
        test_file = output / "selected-tests.json"
        write_test_file(tests, test_file)
    shutil.rmtree(badges, ignore_errors=True)  # cwltest creates it and fails if it exists
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cmd = [str(cwltest), "--test", str(test_file), "--tool", str(tool), "-j", str(args.j)]
    cmd += ["--timeout", str(args.timeout), "--junit-xml", str(junit), "--badgedir", str(badges)]
    cmd += ["--", *args.tool_args] if args.tool_args else []
    # cwltest makes an --outdir per test with mkdtemp and never removes it: keep them all in one place.
    env = {**os.environ, "TMPDIR": str(tmp)}
    print(f"running {len(tests)} tests of {suite.name} with {tool.name} {' '.join(args.tool_args)}", file=sys.stderr)
    print(f"cwltest output goes to {log}", file=sys.stderr)
    started = time.time()
    status = run_cwltest(cmd, suite, env, log, args.quiet)
    duration = time.time() - started
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    if not junit.is_file():
        raise SetupError(f"cwltest exited with {status} and wrote no JUnit XML; see {log}")

    results = res.parse_junit(junit)
    fixed = res.fix_should_fail(results, tests, log.read_text(encoding="utf-8", errors="replace"))
    res.patch_junit(junit, fixed)
    upstream = suite / "UPSTREAM.txt"
    meta = {
        "suite_name": suite.name,
        "suite_upstream": upstream.read_text().strip() if upstream.is_file() else "",
        "tool_name": tool.name,
        "tool_command": " ".join([tool.name, *args.tool_args]),
        "selection": {k: getattr(args, k) for k in ("tags", "exclude_tags", "n", "ids") if getattr(args, k)},
        "cwltest_exit_status": status,
        "timeout_s": args.timeout,
        "parallel": args.j,
        "duration_s": round(duration, 1),
        "should_fail_passed_in_junit": fixed,
    }
    summary = res.summarize(results, tests, meta)
    res.write_json(output / "summary.json", summary)
    res.print_summary(summary)
    print(f"\nwrote {output / 'summary.json'}, {junit}, {badges}/")

    exit_status = 0
    if args.baseline and args.baseline.is_file():
        baseline = res.read_json(args.baseline)
        problems = res.compare_baseline(summary, baseline, partial)
        if baseline.get("tool_command", summary["tool_command"]) != summary["tool_command"]:
            print(f"note: {args.baseline.name} was recorded with `{baseline['tool_command']}`, "
                  f"this run is `{summary['tool_command']}`")
        for problem in problems:
            print(f"REGRESSION: {problem}")
        exit_status = 1 if problems else 0
        if not problems:
            print(f"baseline {args.baseline.name}: no regression")
    if args.write_baseline:
        res.write_json(args.baseline, res.baseline_document(summary))
        print(f"wrote the baseline {args.baseline}: {summary['passed']} passing")
    return exit_status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SetupError as err:
        print(f"run.py: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `run.py -l | head`
        sys.exit(0)
