"""Benchmarks of running containers: crunch-run's overhead and a dispatcher's throughput.

1. crunch-run overhead: `true` containers (local runtime: bubblewrap), one at a time, each to
   Complete with its output and log collections saved. Two ways:
   - through a local dispatcher (which forks crunch-run, already imported): lock → Complete from
     the server's own event timestamps;
   - cold, as a Slurm job would: the container locked with the admin token, then a new
     `crunchctl run-container UUID` process; its wall time. Also shown: the interpreter start
     plus crunch-run's imports, which only this path pays.
   Medians of `--runs`.
2. Dispatch throughput: `--containers` (default 200) `true` requests are queued, then one
   `crunchctl dispatch --backend local --vcpus 16` runs them all; containers per second from the
   dispatcher's start to the last Complete.

Run from the repository root: `.venv/bin/python bench/run_bench.py` (needs bubblewrap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from servers import CrunchServer  # noqa: E402

TARGET_OVERHEAD_MS = 150
TARGET_RATE = 20.0
TRUE = {"name": "bench", "state": "Committed", "priority": 1, "command": ["true"], "cwd": "/var/spool/cwl",
        "output_path": "/var/spool/cwl", "mounts": {"/var/spool/cwl": {"kind": "tmp"}},
        "runtime_constraints": {"vcpus": 1, "ram": 64 << 20}, "use_existing": False}


def _api(server: CrunchServer) -> httpx.Client:
    token = (server.data_dir / "admin-token").read_text().strip()
    return httpx.Client(base_url=server.url + "/arvados/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _crunchctl() -> list[str]:
    return [sys.executable, "-m", "cwl_crunch.cli.main"]


def overhead(workdir: Path, runs: int) -> None:
    server = CrunchServer(workdir / "overhead" / "data").start()
    api = _api(server)
    token = api.headers["Authorization"][7:]
    env = {**os.environ, "CRUNCH_API": server.url, "CRUNCH_DISPATCH_TOKEN": token,
           "CRUNCH_WORK_ROOT": str(workdir / "overhead" / "work"), "CRUNCH_BLOB_ROOT": str(server.data_dir / "blobs")}
    dispatched, cold = [], []
    try:
        dispatcher = _start_dispatcher(server, token, workdir / "overhead", vcpus=2)
        try:
            for i in range(runs + 1):
                uuid = api.post("/container_requests", json={**TRUE, "environment": {"RUN": f"d{i}"}}).json()[
                    "container_uuid"]
                _wait_final(api, [uuid])
                if i:  # the first run warms the page cache and the collection cache
                    dispatched.append(_lock_to_complete(api, uuid))
        finally:
            dispatcher.terminate()
            dispatcher.wait(10)
        for i in range(runs + 1):
            uuid = api.post("/container_requests", json={**TRUE, "environment": {"RUN": f"c{i}"}}).json()[
                "container_uuid"]
            api.post(f"/containers/{uuid}/lock").raise_for_status()
            began = time.perf_counter()
            subprocess.run([*_crunchctl(), "run-container", uuid], env=env, check=True, capture_output=True)
            elapsed = time.perf_counter() - began
            container = api.get(f"/containers/{uuid}").json()
            if container["state"] != "Complete" or not container["log"]:
                raise RuntimeError(f"{uuid} ended {container['state']}")
            if i:
                cold.append(elapsed)
        startup = _timed([sys.executable, "-c", "import cwl_crunch.cli.main, cwl_crunch.runner.crunch_run"])
        bare = _timed(["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--proc", "/proc",
                       "--dev", "/dev", "true"])
    finally:
        server.stop()
    print(f"crunch-run `true` via the local dispatcher, lock → Complete: median {_ms(dispatched)} over {runs} runs "
          f"(min {min(dispatched) * 1000:.0f}, max {max(dispatched) * 1000:.0f}); target ≤ {TARGET_OVERHEAD_MS} ms",
          flush=True)
    print(f"crunch-run `true` cold (new crunchctl run-container process): median {_ms(cold)}; of which python start"
          f" + crunch-run imports {_ms(startup)}; bare bubblewrap `true` {_ms(bare)}", flush=True)


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms"


def _timed(command: list[str], times: int = 5) -> list[float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        subprocess.run(command, check=True)
        samples.append(time.perf_counter() - began)
    return samples


def _lock_to_complete(api: httpx.Client, uuid: str) -> float:
    """From the server's events: when the container became Locked, and when Complete."""
    events = api.get("/events/batch", params={"since": 0, "filters": f'[["object_uuid","=","{uuid}"]]'}).json()["items"]
    at = {e["properties"]["new_state"]: datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
          for e in events if e["properties"].get("old_state") != e["properties"].get("new_state")}
    return (at["Complete"] - at["Locked"]).total_seconds()


def _wait_final(api: httpx.Client, uuids: list[str], timeout: float = 600) -> None:
    pending, began = set(uuids), time.perf_counter()
    while pending:
        done = {c["uuid"] for c in api.get("/containers", params={
            "filters": '[["state","in",["Complete","Cancelled"]]]', "limit": 1000, "select": '["uuid"]',
            "order": "modified_at desc"}).json()["items"]}
        pending -= done
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"{len(pending)} containers still not final after {timeout} s")
        time.sleep(0.02)


def _start_dispatcher(server: CrunchServer, token: str, workdir: Path, vcpus: int) -> subprocess.Popen[bytes]:
    command = [*_crunchctl(), "dispatch", "--api", server.url, "--vcpus", str(vcpus), "--interval", "0.1",
               "--state-dir", str(workdir / "dispatch"), "--work-root", str(workdir / "work"),
               "--blob-root", str(server.data_dir / "blobs")]
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "dispatcher.log").open("wb")
    return subprocess.Popen(command, env={**os.environ, "CRUNCH_DISPATCH_TOKEN": token}, stdout=log, stderr=log)


def throughput(workdir: Path, count: int, vcpus: int) -> None:
    server = CrunchServer(workdir / "throughput" / "data").start()
    api = _api(server)
    token = api.headers["Authorization"][7:]
    uuids = [api.post("/container_requests", json={**TRUE, "environment": {"RUN": str(i)}}).json()["container_uuid"]
             for i in range(count)]
    began = time.perf_counter()
    dispatcher = _start_dispatcher(server, token, workdir / "throughput", vcpus)
    try:
        _wait_final(api, uuids)
        elapsed = time.perf_counter() - began
        states = {api.get(f"/containers/{u}").json()["state"] for u in uuids}
    finally:
        dispatcher.terminate()
        dispatcher.wait(10)
        server.stop()
    print(f"{count} `true` containers, one local dispatcher --vcpus {vcpus}: {elapsed:.1f} s, {count / elapsed:.1f}"
          f" containers/s (states {sorted(states)}); target ≥ {TARGET_RATE:.0f}/s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--vcpus", type=int, default=16)
    parser.add_argument("--only", choices=("overhead", "throughput"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crunch-run-bench-"))
    if args.only in (None, "overhead"):
        overhead(workdir, args.runs)
    if args.only in (None, "throughput"):
        throughput(workdir, args.containers, args.vcpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
