"""Benchmarks of running containers: crunch-run's overhead and a dispatcher's throughput.

1. crunch-run overhead: a `true` container is committed and locked with the admin token, then
   `crunchctl run-container UUID` runs it (local runtime: bubblewrap) to Complete, with its log
   collection saved. The wall time of that process is lock → Complete. Median of `--runs`.
   Also shown: the interpreter start plus crunch-run's imports, the part no code change inside
   crunch-run can remove.
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
    env = {**os.environ, "CRUNCH_API": server.url, "CRUNCH_DISPATCH_TOKEN": api.headers["Authorization"][7:],
           "CRUNCH_WORK_ROOT": str(workdir / "overhead" / "work"), "CRUNCH_BLOB_ROOT": str(server.data_dir / "blobs")}
    times = []
    try:
        for i in range(runs + 1):
            request = api.post("/container_requests", json={**TRUE, "environment": {"RUN": str(i)}}).json()
            uuid = request["container_uuid"]
            api.post(f"/containers/{uuid}/lock").raise_for_status()
            began = time.perf_counter()
            subprocess.run([*_crunchctl(), "run-container", uuid], env=env, check=True, capture_output=True)
            elapsed = time.perf_counter() - began
            container = api.get(f"/containers/{uuid}").json()
            if container["state"] != "Complete" or not container["log"]:
                raise RuntimeError(f"{uuid} ended {container['state']}")
            if i:  # the first run warms the page cache and the collection cache
                times.append(elapsed)
        startup = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import cwl_crunch.cli.main, cwl_crunch.runner.crunch_run"], check=True)
            startup.append(time.perf_counter() - began)
        bare = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--proc", "/proc",
                            "--dev", "/dev", "true"], check=True)
            bare.append(time.perf_counter() - began)
    finally:
        server.stop()
    median = statistics.median(times) * 1000
    print(f"crunch-run `true`, lock → Complete: median {median:.0f} ms over {runs} runs "
          f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); target ≤ {TARGET_OVERHEAD_MS} ms", flush=True)
    print(f"  of which: python start + crunch-run imports {statistics.median(startup) * 1000:.0f} ms, "
          f"bare bubblewrap `true` {statistics.median(bare) * 1000:.0f} ms", flush=True)


def throughput(workdir: Path, count: int, vcpus: int) -> None:
    server = CrunchServer(workdir / "throughput" / "data").start()
    api = _api(server)
    token = api.headers["Authorization"][7:]
    uuids = [api.post("/container_requests", json={**TRUE, "environment": {"RUN": str(i)}}).json()["container_uuid"]
             for i in range(count)]
    command = [*_crunchctl(), "dispatch", "--api", server.url, "--vcpus", str(vcpus), "--interval", "0.1",
               "--state-dir", str(workdir / "throughput" / "dispatch"), "--work-root", str(workdir / "throughput" / "work"),
               "--blob-root", str(server.data_dir / "blobs")]
    log = (workdir / "throughput" / "dispatcher.log").open("wb")
    began = time.perf_counter()
    dispatcher = subprocess.Popen(command, env={**os.environ, "CRUNCH_DISPATCH_TOKEN": token}, stdout=log, stderr=log)
    try:
        pending = set(uuids)
        while pending:
            done = {c["uuid"] for c in api.get("/containers", params={
                "filters": f'[["state","in",["Complete","Cancelled"]]]', "limit": 1000, "select": '["uuid"]'}).json()["items"]}
            pending -= done
            if time.perf_counter() - began > 600:
                raise RuntimeError(f"{len(pending)} containers still not final after 600 s")
            time.sleep(0.1)
        elapsed = time.perf_counter() - began
        states = {c["state"] for c in api.get("/containers", params={"limit": 1000}).json()["items"]}
    finally:
        dispatcher.terminate()
        dispatcher.wait(10)
        server.stop()
    rate = count / elapsed
    print(f"{count} `true` containers, one local dispatcher --vcpus {vcpus}: {elapsed:.1f} s, {rate:.1f} containers/s "
          f"(states {sorted(states)}); target ≥ {TARGET_RATE:.0f}/s", flush=True)


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
