"""Request definitions that look like real work, and HTTP clients that commit them."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

REFERENCE_PDH = hashlib.sha256(b"reference genome").hexdigest() + "+3100000000"


def definition(run: str, index: int) -> dict[str, Any]:
    """The work of one step of an alignment workflow for sample `index` (distinct per run and index)."""
    sample = f"{run}-sample{index:06d}"
    threads = (1, 2, 4, 8)[index % 4]
    return {
        "command": ["bwa", "mem", "-t", str(threads), "/keep/ref/genome.fa", f"/keep/in/{sample}.fq"],
        "cwd": "/var/spool/cwl",
        "environment": {"HOME": "/var/spool/cwl", "TMPDIR": "/tmp", "SAMPLE": sample},
        "output_path": "/var/spool/cwl",
        "output_glob": ["*.bam"],
        "container_image": "",
        "mounts": {
            "/var/spool/cwl": {"kind": "tmp", "capacity": 4 << 30},
            "/keep/ref": {"kind": "collection", "portable_data_hash": REFERENCE_PDH},
            "/keep/in": {"kind": "collection", "portable_data_hash": _input_pdh(sample)},
        },
        "runtime_constraints": {"vcpus": threads, "ram": threads << 31},
    }


def _input_pdh(sample: str) -> str:
    return hashlib.sha256(sample.encode()).hexdigest() + f"+{len(sample) * 1000}"


def request_body(work: dict[str, Any], name: str = "bench") -> dict[str, Any]:
    return {"name": name, "state": "Committed", "priority": 500, **work}


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url + "/arvados/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120)


def commit_concurrently(url: str, token: str, bodies: Sequence[dict[str, Any]], concurrency: int) -> tuple[float, set[str]]:
    """Commit every body with `concurrency` threads (one keep-alive connection each).

    Returns the wall time of the whole batch and the set of container uuids the requests got.
    """
    lock = threading.Lock()
    state = {"next": 0}
    containers: set[str] = set()
    failures: list[str] = []
    clients = [_client(url, token) for _ in range(concurrency)]
    for client in clients:
        client.get("/config")  # open the connections before the clock starts
    start = threading.Barrier(concurrency + 1)

    def work(client: httpx.Client) -> None:
        start.wait()
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= len(bodies):
                return
            response = client.post("/container_requests", json=bodies[index])
            with lock:
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    containers.add(response.json()["container_uuid"])

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for client in clients:
        client.close()
    if failures:
        raise RuntimeError(f"{len(failures)} commits failed, e.g. {failures[0]}")
    return elapsed, containers


def commit_latencies(url: str, token: str, bodies: Sequence[dict[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    """Commit the bodies one after another; the latency of each (seconds) and the responses."""
    latencies, responses = [], []
    with _client(url, token) as client:
        client.get("/config")
        for body in bodies:
            began = time.perf_counter()
            response = client.post("/container_requests", json=body)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"commit failed: {response.status_code} {response.text[:200]}")
            responses.append(response.json())
    return latencies, responses
