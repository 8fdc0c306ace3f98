"""Drive containers through their life over the API, as a dispatcher and crunch-run would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.service import request_body

# A one-file manifest (the blob need not exist: this layer only stores manifests).
LOG_MANIFEST = {"stdout.txt": {"blob": "a" * 64, "size": 12}}
OUTPUT_MANIFEST = {"out.txt": {"blob": "b" * 64, "size": 3}}


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int = 422) -> list[str]:
    """Assert an error of `status` in the `{"errors": [...]}` shape; return the messages."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"] and all(isinstance(m, str) and m for m in body["errors"]), body
    return body["errors"]


def commit(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    return ok(client.post("/container_requests", json=request_body(**overrides)))


def collection(client: httpx.Client, manifest: dict[str, Any]) -> str:
    """Store a manifest; returns its portable data hash."""
    return ok(client.post("/collections", json={"manifest": manifest}))["portable_data_hash"]


def lock(admin: httpx.Client, uuid: str) -> dict[str, Any]:
    return ok(admin.post(f"/containers/{uuid}/lock"))


def run(admin: httpx.Client, uuid: str) -> dict[str, Any]:
    lock(admin, uuid)
    return ok(admin.put(f"/containers/{uuid}", json={"state": "Running"}))


def complete(admin: httpx.Client, uuid: str, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    """Lock (if needed), run and complete with log and output collections saved."""
    if ok(admin.get(f"/containers/{uuid}"))["state"] == "Queued":
        run(admin, uuid)
    log = collection(admin, LOG_MANIFEST)
    output = collection(admin, OUTPUT_MANIFEST)
    body = {"state": "Complete", "exit_code": exit_code, "log": log, "output": output, **extra}
    return ok(admin.put(f"/containers/{uuid}", json=body))


def cancel_running(admin: httpx.Client, uuid: str, cause: str | None = None) -> dict[str, Any]:
    if ok(admin.get(f"/containers/{uuid}"))["state"] == "Queued":
        run(admin, uuid)
    body: dict[str, Any] = {"state": "Cancelled"}
    if cause:
        body["runtime_status"] = {"cause": cause, "error": f"failed ({cause})"}
    return ok(admin.put(f"/containers/{uuid}", json=body))
