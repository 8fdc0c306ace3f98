"""One typed settings object, built at the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    cluster_id: str = "zzzzz"
    database_url: str = "sqlite:///:memory:"
    data_dir: Path | None = None
    dispatcher_timeout: timedelta = timedelta(seconds=60)
    container_heartbeat_timeout: timedelta = timedelta(seconds=60)
    max_dispatch_attempts: int = 10
    default_container_count_max: int = 3
    max_container_count_max: int = 10
    default_request_priority: int = 500
    event_retention: timedelta = timedelta(days=2)
    janitor_interval: float = 5.0
    # Engines available on workers: what clients may put in container_image.
    container_engines: tuple[str, ...] = ("none",)
    blob_store_url: str = ""
    # Where blobs live (`crunchctl server` defaults it to <data dir>/blobs). None: no blob store,
    # so no blob endpoints, and collection manifests are not checked against stored blobs.
    blob_root: Path | None = None
    blobs_read_only: bool = False
    extra: dict[str, str] = field(default_factory=dict)
