"""Dispatch backends compared: what Slurm adds per container, and how fast tiny containers flow.

For each backend (`local`, `slurm`) in the same run: a fresh `crunchctl server`, one
`crunchctl dispatch --backend B` offering the same CPU slots (--slots, default 8) (the local backend's --vcpus, the
throwaway Slurm node's declared CPUs), then
  1. latency: tiny containers one at a time; request created → Running → Final, from the
     service's own timestamps;
  2. throughput: N tiny containers submitted at once; first created → last finished.

    .venv/bin/python bench/dispatch_bench.py --containers 100 --latency-samples 10 --repeat 2

Slurm is the tests' throwaway single-node cluster (tests/support/slurm.py): run as root, with
slurmctld, slurmd and munge installed (.ci/install-deps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import CrunchServer, _crunchctl  # noqa: E402
from tests.support.slurm import ThrowawaySlurm, slurm_unavailable  # noqa: E402

FINAL = ("Complete", "Cancelled")


@contextmanager
def dispatching(backend: str, workdir: Path, slurm: ThrowawaySlurm | None, slots: int) -> Iterator[tuple[CrunchServer, httpx.Client]]:
    """A fresh server and a dispatcher of `backend`; yields the server and a user's client."""
    server = CrunchServer(workdir / "data").start()
    admin_token = (server.data_dir / "admin-token").read_text().strip()
    command = [*_crunchctl(), "dispatch", "--api", server.url, "--backend", backend, "--interval", "0.5",
               "--state-dir", str(workdir / "dispatch"), "--work-root", str(workdir / "work"),
               "--blob-root", str(server.data_dir / "blobs"), "--hide", str(server.data_dir)]
    if backend == "local":
        command += ["--vcpus", str(slots)]
    env = {**os.environ, "CRUNCH_DISPATCH_TOKEN": admin_token, **(slurm.env if slurm else {})}
    log = (workdir / "dispatcher.log").open("wb")
    dispatcher = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    log.close()
    client = httpx.Client(base_url=f"{server.url}/arvados/v1", timeout=60,
                          headers={"Authorization": f"Bearer {server.user_token('bench')}"})
    try:
        yield server, client
    finally:
        client.close()
        dispatcher.terminate()
        dispatcher.wait(15)
        server.stop()


def submit(client: httpx.Client, label: str) -> str:
    body = {"name": label, "state": "Committed", "priority": 500, "command": ["echo", label],
            "container_image": "", "output_path": "/out", "cwd": "/out",
            "mounts": {"/out": {"kind": "tmp", "capacity": 1 << 20}},
            "runtime_constraints": {"vcpus": 1, "ram": 64 << 20}, "use_existing": False}
    response = client.post("/container_requests", json=body)
    response.raise_for_status()
    return response.json()["uuid"]


def wait_final(client: httpx.Client, requests: list[str], timeout: float) -> list[dict[str, Any]]:
    """The containers of `requests` once every one is final."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/container_requests", params={"filters": json.dumps([["uuid", "in", requests]]),
                                                             "limit": len(requests), "select": json.dumps(["container_uuid"])})
        uuids = [r["container_uuid"] for r in listed.json()["items"] if r["container_uuid"]]
        containers = client.get("/containers", params={"filters": json.dumps([["uuid", "in", uuids]]), "limit": len(uuids)})
        items = containers.json()["items"]
        if len(items) == len(requests) and all(c["state"] in FINAL for c in items):
            return items
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all final within {timeout} s: {sorted(c['state'] for c in items)}")
        time.sleep(0.1)


def _t(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def latency(client: httpx.Client, samples: int) -> dict[str, float]:
    to_running, to_final = [], []
    for i in range(samples):
        request = submit(client, f"latency-{time.time_ns()}-{i}")
        (container,) = wait_final(client, [request], timeout=120)
        assert container["state"] == "Complete", container
        to_running.append(_t(container["started_at"]) - _t(container["created_at"]))
        to_final.append(_t(container["finished_at"]) - _t(container["created_at"]))
    return {"to_running_median": statistics.median(to_running), "to_final_median": statistics.median(to_final)}


def throughput(client: httpx.Client, count: int) -> dict[str, float]:
    requests = [submit(client, f"burst-{time.time_ns()}-{i}") for i in range(count)]
    containers = wait_final(client, requests, timeout=60 + count * 5)
    failed = [c for c in containers if c["state"] != "Complete"]
    assert not failed, failed[:2]
    first = min(_t(c["created_at"]) for c in containers)
    last = max(_t(c["finished_at"]) for c in containers)
    return {"makespan": last - first, "per_second": count / (last - first)}


def measure(backend: str, args: argparse.Namespace, slurm: ThrowawaySlurm | None) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"dispatch-bench-{backend}-"))
    try:
        with dispatching(backend, workdir, slurm, args.slots) as (_, client):
            wait_final(client, [submit(client, "warm-up")], timeout=120)  # dispatcher registered, caches warm
            return {**latency(client, args.latency_samples), **throughput(client, args.containers)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--slots", type=int, default=8, help="CPUs of the Slurm node and of the local dispatcher")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    reason = slurm_unavailable()
    if reason is not None:
        print(f"dispatch_bench: cannot start Slurm: {reason}", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {"local": [], "slurm": []}
    with ThrowawaySlurm(cpus=args.slots) as slurm:
        for rep in range(args.repeat):
            for backend in results:
                results[backend].append(measure(backend, args, slurm if backend == "slurm" else None))
                print(f"rep {rep + 1} {backend}: {results[backend][-1]}", file=sys.stderr)
    print(f"{args.containers} tiny containers, {args.slots} slots, medians of {args.repeat} run(s):")
    print(f"{'backend':8} {'created→Running':>16} {'created→Final':>14} {'makespan':>9} {'containers/s':>13}")
    summary = {}
    for backend, runs in results.items():
        summary[backend] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        s = summary[backend]
        print(f"{backend:8} {s['to_running_median']:>15.3f}s {s['to_final_median']:>13.3f}s"
              f" {s['makespan']:>8.1f}s {s['per_second']:>13.1f}")
    local, slurm_ = summary["local"], summary["slurm"]
    print(f"slurm adds {slurm_['to_running_median'] - local['to_running_median']:.3f} s per container before Running;"
          f" throughput ratio slurm/local {slurm_['per_second'] / local['per_second']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
