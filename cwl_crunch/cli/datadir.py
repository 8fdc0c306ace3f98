"""The server's data directory: database location and the first admin token."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from ..services.auth import create_user_token
from ..store import Store

ADMIN_TOKEN = "admin-token"
DATABASE_URL = "database-url"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never world-readable for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def database_url(data_dir: Path, given: str | None) -> str:
    """The URL given (remembered for later commands), else the remembered one, else SQLite in DIR."""
    remembered = data_dir / DATABASE_URL
    if given:
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(remembered, given + "\n")
        return given
    if remembered.exists():
        return remembered.read_text().strip()
    return f"sqlite:///{(data_dir / 'crunch.sqlite3').resolve()}"


def ensure_admin_token(data_dir: Path, store: Store, cluster_id: str) -> Path:
    """On first start, create the admin user and write its token to DIR/admin-token (0600)."""
    path = data_dir / ADMIN_TOKEN
    if not path.exists():
        secret = create_user_token(store, cluster_id, "admin", admin=True, now=datetime.now(timezone.utc))
        _write_private(path, secret + "\n")
    return path
