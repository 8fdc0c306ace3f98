"""What cwl_bench.py measures and how it reports it: the workflows with their expected outputs,
the runners' labels, the ratios the project tracks, one run's record, and the summary table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

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
