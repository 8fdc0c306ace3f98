"""The API server as `crunchctl server` and `crunchctl local-service` build it from a data directory."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from ..server import create_app
from ..services.context import Context
from ..settings import Settings
from ..store import Store, open_store
from . import datadir


@dataclass(frozen=True)
class Built:
    app: FastAPI
    settings: Settings
    store: Store
    admin_token_path: Path


def build_server(
    data_dir: Path,
    *,
    database: str | None = None,
    cluster_id: str = "zzzzz",
    heartbeat_timeout: float = 60.0,
    dispatcher_timeout: float = 60.0,
    blob_root: Path | None = None,
    blobs_read_only: bool = False,
) -> Built:
    """Settings, a migrated store, the first admin token and the app, for a server over `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        cluster_id=cluster_id,
        database_url=datadir.database_url(data_dir, database),
        data_dir=data_dir,
        container_heartbeat_timeout=timedelta(seconds=heartbeat_timeout),
        dispatcher_timeout=timedelta(seconds=dispatcher_timeout),
        blob_root=blob_root or data_dir / "blobs",
        blobs_read_only=blobs_read_only,
    )
    store = open_store(settings.database_url)
    token_path = datadir.ensure_admin_token(data_dir, store, settings.cluster_id)
    return Built(create_app(Context(store, settings)), settings, store, token_path)


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port, for handing to uvicorn (`sockets=[...]`).

    It must be made with `IPPROTO_TCP` rather than the default protocol 0: asyncio turns Nagle's
    algorithm off (TCP_NODELAY) only on accepted sockets whose protocol says TCP, and with Nagle on,
    every response after the first on a keep-alive connection waits about 40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock
