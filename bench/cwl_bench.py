"""CWL runner benchmark: cwl-crunch against cwltool and toil-cwl-runner, interleaved in one run.

The workflows, inputs and expected output md5s are the shared ones described in
../shared/bench/README.md (resolved from the repository root; `--bench-dir` to point elsewhere).
Every run starts in that folder with a fresh output directory and its own TMPDIR; its outputs
are checked against the md5 table, its wall time taken, and the peak summed RSS of its whole
process tree polled from /proc every 0.1 s. A missing, failing, timed-out or wrong runner is
reported in the table, never fatal.

    .venv/bin/python bench/cwl_bench.py --setup            # peer venvs in bench/.peers/
    .venv/bin/python bench/cwl_bench.py --json results.json
    .venv/bin/python bench/cwl_bench.py --workflows scatter-100,chain-50 \\
        --runners cwltool,cwltool-parallel,toil --repeat 1
    .venv/bin/python bench/cwl_bench.py --crunch-args=--local   # '=' since the value starts with '-'

Stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DIR = ROOT.parent / "shared" / "bench"
DEFAULT_PEERS_DIR = ROOT / "bench" / ".peers"
PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.1

# workflow -> (CWL file, input file, tool jobs, {output id: md5}), from the README's md5 table.
# scatter-1 and chain-1 are not in the table: their md5s follow the same rule as scatter-N
# ("0".."N-1", one per line) and chain-50 (seed line + "step 1".."step N"), which reproduces the
# table's md5s for N = 10, 100, 500 and 50.
WORKFLOWS = {
    "scatter-1": ("scatter-N.cwl", "inputs/scatter-1.yml", 2,
                  {"gathered": "897316929176464ebc9ad085f31e7284"}),
    "scatter-100": ("scatter-N.cwl", "inputs/scatter-100.yml", 101,
                    {"gathered": "9a10f4f09341c2db76a16b44f841c551"}),
    "scatter-500": ("scatter-N.cwl", "inputs/scatter-500.yml", 501,
                    {"gathered": "96d9f3cd2c28748e81d86852ab2e1636"}),
    "chain-1": ("chain-1.cwl", "inputs/chain.yml", 1, {"result": "a468a361ac4c07f5b2aeaf61fddff27c"}),
    "chain-50": ("chain-50.cwl", "inputs/chain.yml", 50, {"result": "c6b68a9bd207bc23f419e850035bacae"}),
    "wordcount": ("wordcount.cwl", "inputs/wordcount.yml", 22,
                  {"top_words": "5cea112e53103a4cf8426fe44e332f41",
                   "all_counts": "7f92f9be9a4bdc1e08cd6cd42cd4857a",
                   "chunk_wc": "c36ecabc1bd3996685ec2bae577b9cfc"}),
}
# per-step overhead: (workflow, its one-step baseline)
OVERHEAD_PAIRS = [("scatter-100", "scatter-1"), ("scatter-500", "scatter-1"),
                  ("chain-50", "chain-1"), ("wordcount", "chain-1")]
RUNNER_LABELS = {
    "crunch": "cwl-crunch",
    "crunch-reuse": "cwl-crunch reuse-run",
    "cwltool-parallel": "cwltool --parallel",
    "cwltool": "cwltool",
    "cwltool-cache": "cwltool --cachedir 2nd",
    "toil": "toil-cwl-runner",
}
# (label, numerator runner, denominator runner, workflow): the ratios the project tracks
RATIOS = [
    ("cwl-crunch / cwltool --parallel, scatter-500", "crunch", "cwltool-parallel", "scatter-500"),
    ("toil / cwl-crunch, scatter-500", "toil", "crunch", "scatter-500"),
    ("cwl-crunch / cwltool, chain-50", "crunch", "cwltool", "chain-50"),
    ("cwl-crunch reuse-run / cwltool --cachedir 2nd run, scatter-500", "crunch-reuse", "cwltool-cache", "scatter-500"),
]
PEER_PACKAGES = {"cwltool": ["cwltool"], "toil": ["toil[cwl]"]}


@dataclass
class Run:
    """One timed run (or its failure) of one runner on one workflow."""

    workflow: str
    runner: str
    rep: int
    status: str = "ok"  # ok | failed | timeout | wrong-output | missing
    wall_s: float | None = None
    peak_mib: float | None = None
    peak_procs: int | None = None
    detail: str = ""
    prime_wall_s: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Runner:
    """How to start one runner: a command builder plus its environment and optional priming run."""

    name: str
    executable: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    reuse: str = ""  # "" | "cachedir" | "datadir": a priming run shares state with the timed run
    data_env: str = ""  # env var naming a fresh state directory per (priming +) timed run


# ---------------------------------------------------------------- setup


def setup_peers(peers_dir: Path, python: str) -> int:
    """Create the cwltool and toil venvs under peers_dir (skipping ones already installed)."""
    peers_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, packages in PEER_PACKAGES.items():
        venv = peers_dir / name
        script = venv / "bin" / ("cwltool" if name == "cwltool" else "toil-cwl-runner")
        if script.exists():
            print(f"setup: {name}: already installed in {venv}")
            continue
        print(f"setup: {name}: {python} -m venv {venv}; pip install {' '.join(packages)}", flush=True)
        steps = [[python, "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages]]
        for cmd in steps:
            if subprocess.run(cmd, check=False).returncode != 0:
                print(f"setup: {name}: failed: {' '.join(cmd)}", file=sys.stderr)
                failed += 1
                break
    return 1 if failed else 0


# ---------------------------------------------------------------- runners


def make_runners(args: argparse.Namespace) -> dict[str, Runner]:
    """Build every known runner from the command line options."""
    cwltool = args.peers_dir / "cwltool" / "bin" / "cwltool"
    toil_bin = args.peers_dir / "toil" / "bin"
    crunch_args = args.crunch_args.split() if args.crunch_args else []
    toil_path = f"{toil_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        "crunch": Runner("crunch", args.crunch, crunch_args, data_env="CWL_CRUNCH_DATA_DIR"),
        "crunch-reuse": Runner("crunch-reuse", args.crunch, crunch_args, reuse="datadir",
                               data_env="CWL_CRUNCH_DATA_DIR"),
        "cwltool-parallel": Runner("cwltool-parallel", cwltool, ["--quiet", "--parallel"]),
        "cwltool": Runner("cwltool", cwltool, ["--quiet"]),
        "cwltool-cache": Runner("cwltool-cache", cwltool, ["--quiet"], reuse="cachedir"),
        "toil": Runner("toil", toil_bin / "toil-cwl-runner", [], env={"PATH": toil_path}),
    }


def command(runner: Runner, workflow: str, rundir: Path, state: Path) -> list[str]:
    """The command line of one run of runner on workflow, writing under rundir."""
    cwl, inputs, _, _ = WORKFLOWS[workflow]
    cmd = [str(runner.executable), *runner.args]
    if runner.reuse == "cachedir":
        cmd += ["--cachedir", str(state)]
    if runner.name == "toil":
        (rundir / "work").mkdir()
        cmd += ["--jobStore", str(rundir / "jobstore"), "--workDir", str(rundir / "work")]
    return [*cmd, "--outdir", str(rundir / "out"), cwl, inputs]


def run_env(runner: Runner, rundir: Path, state: Path) -> dict[str, str]:
    """The environment of one run: the runner's own, a private TMPDIR, its state directory."""
    env = {**os.environ, **runner.env, "TMPDIR": str(rundir / "tmp")}
    if runner.data_env:
        env[runner.data_env] = str(state)
    return env


# ---------------------------------------------------------------- process tree polling


def _proc_table() -> dict[int, tuple[int, int]]:
    """Map every live (not zombie) pid to (parent pid, session id), read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                table[int(entry)] = (int(fields[1]), int(fields[3]))
        except (OSError, ValueError):
            pass
    return table


def tree_pids(root: int) -> list[int]:
    """Pids of root's descendants and of everything left in its session (it leads one)."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(kids.get(pid, []))
    found.update(pid for pid, (_, sid) in table.items() if sid == root)
    return [pid for pid in found if pid in table]


def tree_rss(root: int) -> tuple[int, int]:
    """Summed resident set size in bytes and process count of root's tree."""
    total, count = 0, 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            count += 1
        except (OSError, ValueError, IndexError):
            pass
    return total, count


class Poller(threading.Thread):
    """Poll a process tree's summed RSS every POLL_S until stopped; keep the peaks."""

    def __init__(self, pid: int) -> None:
        """Prepare to poll the tree of pid (started by start())."""
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_procs = pid, 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until stop() is called."""
        while not self.stopped.is_set():
            rss, count = tree_rss(self.pid)
            self.peak, self.peak_procs = max(self.peak, rss), max(self.peak_procs, count)
            self.stopped.wait(POLL_S)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self.stopped.set()
        self.join()


# ---------------------------------------------------------------- one run


def kill_session(pid: int) -> int:
    """SIGKILL whatever is left in the process group/session that pid leads; return how many."""
    left = [p for p in tree_pids(pid) if p != pid]
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(left)


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, bool]:
    """Wait for proc; on timeout SIGTERM its process group and give it 10 s. (rc, timed out)."""
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            return proc.wait(timeout=10), True
        except (subprocess.TimeoutExpired, ProcessLookupError):
            return None, True


def execute(cmd: list[str], cwd: Path, env: dict[str, str], logdir: Path, timeout: float) -> dict:
    """Run cmd in its own session, timed and polled; return wall time, rc, peaks, stragglers."""
    with open(logdir / "stdout", "wb") as out, open(logdir / "stderr", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        poller = Poller(proc.pid)
        poller.start()
        rc = None
        try:
            rc, timed_out = _wait(proc, timeout)
            wall = time.perf_counter() - t0
        finally:  # also on Ctrl-C: the runner is in its own session and would not see it
            poller.stop()
            stragglers = kill_session(proc.pid)
            if rc is None:
                rc = proc.wait()
    return {"rc": rc, "timed_out": timed_out, "wall_s": wall, "peak": poller.peak,
            "procs": poller.peak_procs, "stragglers": stragglers}


def _file_path(value: object) -> Path | None:
    """The local path of a CWL File object from a runner's output JSON."""
    if not isinstance(value, dict):
        return None
    if value.get("path"):
        return Path(value["path"])
    location = str(value.get("location", ""))
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    return None


def check_outputs(workflow: str, logdir: Path, outdir: Path) -> tuple[bool, str, dict[str, str]]:
    """Compare the run's output files (from its stdout JSON, else by name in outdir) to the md5s."""
    expected = WORKFLOWS[workflow][3]
    try:
        reported = json.loads((logdir / "stdout").read_text())
    except (OSError, ValueError):
        reported = {}
    found, problems = {}, []
    for out_id, want in expected.items():
        path = _file_path(reported.get(out_id)) if isinstance(reported, dict) else None
        if path is None or not path.is_file():
            problems.append(f"{out_id}: not in the output object")
            continue
        if outdir.resolve() not in path.resolve().parents:
            problems.append(f"{out_id}: {path.name} is not in --outdir")
            continue
        found[out_id] = hashlib.md5(path.read_bytes()).hexdigest()
        if found[out_id] != want:
            problems.append(f"{out_id}: md5 {found[out_id]}, expected {want}")
    return not problems, "; ".join(problems), found


def _tail(path: Path, lines: int = 8) -> str:
    """The last lines of a log file, for a failure report."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[-1500:]


def attempt(runner: Runner, workflow: str, rundir: Path, state: Path, args: argparse.Namespace) -> Run:
    """One run: fresh outdir and TMPDIR, executed, then its outputs checked."""
    rundir.mkdir(parents=True)
    for sub in ("out", "tmp"):
        (rundir / sub).mkdir()
    cmd = command(runner, workflow, rundir, state)
    res = execute(cmd, args.bench_dir, run_env(runner, rundir, state), rundir, args.timeout)
    run = Run(workflow, runner.name, 0, wall_s=round(res["wall_s"], 3),
              peak_mib=round(res["peak"] / 2**20, 1), peak_procs=res["procs"])
    if res["stragglers"] and not res["timed_out"]:
        run.detail = f"killed {res['stragglers']} process(es) left behind; "
    if res["timed_out"]:
        run.status, run.detail = "timeout", run.detail + f"no exit after {args.timeout:g} s"
    elif res["rc"] != 0:
        run.status = "failed"
        run.detail += f"exit {res['rc']}: {_tail(rundir / 'stderr')}"
    else:
        ok, problems, run.outputs = check_outputs(workflow, rundir, rundir / "out")
        if not ok:
            run.status, run.detail = "wrong-output", run.detail + problems
    return run


def measure(runner: Runner, workflow: str, rep: int, work: Path, args: argparse.Namespace) -> Run:
    """One repetition: a priming run first for the reuse runners, then the timed run."""
    if not os.access(runner.executable, os.X_OK):
        return Run(workflow, runner.name, rep, status="missing", detail=f"no executable {runner.executable}")
    base = work / f"{workflow}.{runner.name}.{rep}"
    state = base / "state"
    state.mkdir(parents=True)
    prime = None
    if runner.reuse:
        prime = attempt(runner, workflow, base / "prime", state, args)
        if prime.status != "ok":
            prime.rep, prime.detail = rep, "priming run: " + prime.detail
            return _cleanup(prime, base, args)
    run = attempt(runner, workflow, base / "timed", state, args)
    run.rep = rep
    if prime is not None:
        run.prime_wall_s = prime.wall_s
    return _cleanup(run, base, args)


def _cleanup(run: Run, base: Path, args: argparse.Namespace) -> Run:
    """Remove a run's directories unless --keep; pass the run through."""
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return run


# ---------------------------------------------------------------- summary


def summarize(runs: list[Run]) -> dict[str, dict[str, dict]]:
    """Per workflow and runner: runs, failures, min and median seconds, peak MiB."""
    cells: dict[str, dict[str, dict]] = {}
    for run in runs:
        cell = cells.setdefault(run.workflow, {}).setdefault(
            run.runner, {"times": [], "peaks": [], "failures": [], "runs": 0})
        cell["runs"] += 1
        if run.status == "ok":
            cell["times"].append(run.wall_s)
            cell["peaks"].append(run.peak_mib)
        else:
            cell["failures"].append(f"{run.status}: {run.detail}" if run.detail else run.status)
    for per_runner in cells.values():
        for cell in per_runner.values():
            times = cell["times"]
            cell["min_s"] = min(times) if times else None
            cell["median_s"] = round(statistics.median(times), 3) if times else None
            cell["peak_mib"] = max(cell["peaks"]) if cell["peaks"] else None
    return cells


def _median(cells: dict, workflow: str, runner: str) -> float | None:
    """The median seconds of one cell, None when it has no good run."""
    return cells.get(workflow, {}).get(runner, {}).get("median_s")


def _min(cells: dict, workflow: str, runner: str) -> float | None:
    """The minimum seconds of one cell, None when it has no good run."""
    return cells.get(workflow, {}).get(runner, {}).get("min_s")


def ratios(cells: dict) -> list[dict]:
    """The project's ratios (of medians, and of minima), or why one is unavailable."""
    result = []
    for label, num, den, workflow in RATIOS:
        entry = {"ratio": label, "median": None, "min": None}
        a, b = _median(cells, workflow, num), _median(cells, workflow, den)
        if a is None or b is None:
            missing = [RUNNER_LABELS[r] for r, v in ((num, a), (den, b)) if v is None]
            entry["unavailable"] = "no good run of " + ", ".join(missing)
        else:
            entry["median"] = round(a / b, 3)
            entry["min"] = round(_min(cells, workflow, num) / _min(cells, workflow, den), 3)
        result.append(entry)
    return result


def overheads(cells: dict, runners: list[str]) -> list[dict]:
    """Per-step overhead in ms: (T(workflow) - T(1-step baseline)) / (jobs - baseline jobs)."""
    result = []
    for workflow, base in OVERHEAD_PAIRS:
        for runner in runners:
            t, t0 = _median(cells, workflow, runner), _median(cells, base, runner)
            if t is None or t0 is None:
                continue
            jobs = WORKFLOWS[workflow][2] - WORKFLOWS[base][2]
            result.append({"workflow": workflow, "baseline": base, "runner": runner,
                           "ms_per_step": round((t - t0) / jobs * 1000, 1)})
    return result


def _cell_text(cell: dict | None) -> str:
    """One table cell: min / median s, peak MiB, and failures."""
    if not cell:
        return "-"
    parts = []
    if cell["times"]:
        parts.append(f"{cell['min_s']:.2f} / {cell['median_s']:.2f} s, {cell['peak_mib']:.0f} MiB")
    if cell["failures"]:
        kinds = sorted({f.split(":")[0] for f in cell["failures"]})
        parts.append(f"{'/'.join(kinds).upper()} {len(cell['failures'])}/{cell['runs']}")
    return "; ".join(parts)


def print_report(cells: dict, workflows: list[str], runners: list[str], runs: list[Run]) -> None:
    """Print the Markdown table, the ratios, the per-step overheads and every failure."""
    print("\n## Results (min / median wall seconds, peak MiB of the process tree)\n")
    print("| workflow (jobs) | " + " | ".join(RUNNER_LABELS[r] for r in runners) + " |")
    print("|---" * (len(runners) + 1) + "|")
    for wf in workflows:
        row = [_cell_text(cells.get(wf, {}).get(r)) for r in runners]
        print(f"| {wf} ({WORKFLOWS[wf][2]}) | " + " | ".join(row) + " |")
    print("\n## Ratios (of medians; of minima in brackets)\n")
    for entry in ratios(cells):
        value = entry.get("unavailable") or f"{entry['median']:.2f}x ({entry['min']:.2f}x)"
        print(f"- {entry['ratio']}: {value}")
    steps = overheads(cells, runners)
    if steps:
        print("\n## Per-step overhead (medians)\n")
        for s in steps:
            print(f"- {RUNNER_LABELS[s['runner']]}, {s['workflow']} vs {s['baseline']}: {s['ms_per_step']} ms/step")
    failures = [r for r in runs if r.status != "ok"]
    if failures:
        print("\n## Failures\n")
        seen = set()
        for r in failures:
            key = (r.workflow, r.runner, r.status, r.detail)
            if r.status == "missing" and key in seen:
                continue
            seen.add(key)
            print(f"- {r.workflow} / {RUNNER_LABELS[r.runner]} / rep {r.rep}: {r.status}: {r.detail}")


# ---------------------------------------------------------------- main


def versions(runners: dict[str, Runner], selected: list[str]) -> dict[str, str]:
    """Installed versions of the selected runners' packages (read with each venv's python)."""
    found = {}
    for name in selected:
        runner = runners[name]
        package = {"crunch": "cwl-crunch", "crunch-reuse": "cwl-crunch", "toil": "toil"}.get(name, "cwltool")
        python = runner.executable.parent / "python"
        if package in found:
            continue
        if not os.access(runner.executable, os.X_OK) or not python.exists():
            found[package] = "missing"
            continue
        probe = f"import importlib.metadata as m; print(m.version({package!r}))"
        res = subprocess.run([str(python), "-c", probe], check=False, capture_output=True, text=True)
        found[package] = res.stdout.strip() if res.returncode == 0 else "unknown"
    return found


def _csv(value: str, known: dict) -> list[str]:
    """Parse a comma-separated selection, rejecting unknown names."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workflows", type=lambda v: _csv(v, WORKFLOWS), default=list(WORKFLOWS),
                   help=f"comma-separated, from: {', '.join(WORKFLOWS)} (default: all)")
    p.add_argument("--runners", type=lambda v: _csv(v, RUNNER_LABELS), default=list(RUNNER_LABELS),
                   help=f"comma-separated, from: {', '.join(RUNNER_LABELS)} (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per workflow and runner (default 3)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed (default 900)")
    p.add_argument("--crunch", type=Path, default=Path(sys.executable).parent / "cwl-crunch",
                   help="the cwl-crunch executable (default: next to this interpreter)")
    p.add_argument("--crunch-args", default="", help="extra arguments for cwl-crunch, e.g. '--local'")
    p.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR,
                   help="folder with the cwltool/ and toil/ venvs (default bench/.peers/)")
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR,
                   help="the shared workflows (default ../shared/bench from the repository root)")
    p.add_argument("--setup", action="store_true", help="create the peer venvs in --peers-dir, then exit")
    p.add_argument("--setup-python", default="python3", help="interpreter for --setup's venvs (default python3)")
    p.add_argument("--json", type=Path, help="also write every run and the summary to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep every run's directory (printed at the end)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.peers_dir, args.bench_dir = args.peers_dir.absolute(), args.bench_dir.resolve()
    return args


def run_all(args: argparse.Namespace, runners: dict[str, Runner], work: Path) -> list[Run]:
    """Every repetition of every workflow, runners interleaved and rotated per repetition (Ctrl-C stops)."""
    runs = []
    total = args.repeat * len(args.workflows) * len(args.runners)
    for rep in range(args.repeat):
        shift = rep % len(args.runners)
        order = args.runners[shift:] + args.runners[:shift]
        for workflow in args.workflows:
            for name in order:
                try:
                    run = measure(runners[name], workflow, rep, work, args)
                except KeyboardInterrupt:
                    print("interrupted: reporting the runs so far", flush=True)
                    return runs
                runs.append(run)
                wall = f"{run.wall_s:.2f} s, {run.peak_mib:.0f} MiB" if run.wall_s is not None else ""
                note = f" {run.detail[:200]}" if run.detail else ""
                print(f"[{len(runs)}/{total}] {workflow} {RUNNER_LABELS[name]}: {run.status} {wall}{note}",
                      flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    """Set up the peers, or run the benchmark and report."""
    args = parse_args(argv)
    if args.setup:
        return setup_peers(args.peers_dir, args.setup_python)
    if not (args.bench_dir / "README.md").exists():
        print(f"no shared bench folder at {args.bench_dir} (see --bench-dir)", file=sys.stderr)
        return 2
    runners = make_runners(args)
    work = Path(tempfile.mkdtemp(prefix="cwl-bench-"))
    try:
        runs = run_all(args, runners, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    cells = summarize(runs)
    print_report(cells, args.workflows, args.runners, runs)
    if args.keep:
        print(f"\nrun directories kept in {work}")
    if args.json:
        write_json(args, runners, runs, cells)
    return 0


def write_json(args: argparse.Namespace, runners: dict[str, Runner], runs: list[Run], cells: dict) -> None:
    """Write the runs, the summary, the ratios and the environment to --json."""
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "versions": versions(runners, args.runners),
        "repeat": args.repeat, "timeout_s": args.timeout, "crunch_args": args.crunch_args,
        "workflows": args.workflows, "runners": args.runners,
        "summary": {wf: {r: {k: v for k, v in c.items() if k != "peaks"} for r, c in per.items()}
                    for wf, per in cells.items()},
        "ratios": ratios(cells), "per_step_overhead": overheads(cells, args.runners),
        "runs": [asdict(r) for r in runs],
    }
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
