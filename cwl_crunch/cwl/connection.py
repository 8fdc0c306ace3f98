"""Reaching the container service: a shared one (`--api`), the container's own API (inside a
runner container), or the embedded local service, started if need be.

Light to import (Keep, which needs cwltool, is imported when connecting): the console command
(`entry.py`) asks `uses_containers_api` before cwltool is imported."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..client import Client

if TYPE_CHECKING:
    from .keepfs import Keep


class Unreachable(Exception):
    """The container service cannot be reached (or started)."""


class Connection:
    """The connection to the service, made in a background thread from the start: starting the
    embedded service (about a second, cold) overlaps loading and validating the workflow."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._result: tuple[Client, Keep] | None = None
        self._error: Exception | None = None
        # A daemon thread: an invalid workflow is reported at once; a service being started goes on
        # starting (detached) for the next run.
        self._thread = threading.Thread(target=self._connect, args=(args,), name="connect", daemon=True)
        self._thread.start()

    def _connect(self, args: argparse.Namespace) -> None:
        from .keepfs import Keep

        try:
            api, blob_root = _connect(args)
            config = api.request("GET", "/config")
            self._result = api, Keep(api, blob_root, mount_manifests=config.get("mount_manifests") is True)
        except Exception as error:  # noqa: BLE001 - any failure to reach a service is reported by get()
            self._error = error

    def get(self) -> tuple[Client, Keep]:
        self._thread.join()
        if self._result is None:
            raise Unreachable(f"cannot reach the container service: {self._error}")
        return self._result


def _connect(args: argparse.Namespace) -> tuple[Client, Path | None]:
    """The shared service named, the container's own API, or the embedded local service."""
    if args.api:
        if not args.token:
            raise ValueError("--api needs --token (or CWL_CRUNCH_TOKEN)")
        api = Client(args.api, args.token)
        api.request("GET", "/users/current")  # reachable, and the token is accepted
        return api, None
    if uses_containers_api():
        blob_root = os.environ.get("CRUNCH_BLOB_ROOT")
        return Client(os.environ["CRUNCH_API"], os.environ["CRUNCH_API_TOKEN"]), Path(blob_root) if blob_root else None
    from ..embedded import default_data_dir, ensure_running

    service = ensure_running(args.data_dir or default_data_dir())
    return Client(service.api_url, service.token), service.blob_root


def inside_container() -> bool:
    """Whether this runs as a container's process (the runner of a submitted workflow)."""
    return bool(os.environ.get("CRUNCH_CONTAINER_UUID"))


def uses_containers_api() -> bool:
    """Whether a run without `--api` uses its container's own API (not the embedded service)."""
    return inside_container() and bool(os.environ.get("CRUNCH_API"))
