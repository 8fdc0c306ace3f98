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
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from cwl_report import (
    RUNNER_LABELS,
    WORKFLOWS,
    Run,
    overheads,
    print_report,
    ratios,
    summarize,
)
from proctree import execute

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DIR = ROOT.parent / "shared" / "bench"
DEFAULT_PEERS_DIR = ROOT / "bench" / ".peers"

PEER_PACKAGES = {"cwltool": ["cwltool"], "toil": ["toil[cwl]"]}


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


# ---------------------------------------------------------------- one run


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
            stop_embedded_service(runner, state)
            return _cleanup(prime, base, args)
    run = attempt(runner, workflow, base / "timed", state, args)
    stop_embedded_service(runner, state)
    run.rep = rep
    if prime is not None:
        run.prime_wall_s = prime.wall_s
    return _cleanup(run, base, args)


def stop_embedded_service(runner: Runner, state: Path) -> None:
    """Stop the service a cwl-crunch run started in its data directory: it runs detached, in a
    session of its own, so killing the run's session leaves it running (and removing the
    directory would orphan it)."""
    if runner.data_env != "CWL_CRUNCH_DATA_DIR" or not (state / "service.json").exists():
        return
    crunchctl = runner.executable.parent / "crunchctl"
    command = [str(crunchctl)] if crunchctl.exists() else [sys.executable, "-m", "cwl_crunch.cli.main"]
    subprocess.run([*command, "local-service", "stop", "--data-dir", str(state)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)


def _cleanup(run: Run, base: Path, args: argparse.Namespace) -> Run:
    """Remove a run's directories unless --keep; pass the run through."""
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return run


# ---------------------------------------------------------------- summary


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
