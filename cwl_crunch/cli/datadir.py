"""The server's data directory: database location, the first admin token, the local user's token."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from ..embedded import USER_TOKEN
from ..services.auth import create_user_token, hash_secret
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
    """Unless DIR/admin-token holds a token the database knows, create the admin and write one there (0600)."""
    return _ensure_token(data_dir / ADMIN_TOKEN, store, cluster_id, "admin", admin=True)


def ensure_user_token(data_dir: Path, store: Store, cluster_id: str, user: str) -> Path:
    """Unless DIR/user-token holds a token the database knows, write a new one there for `user` (0600)."""
    return _ensure_token(data_dir / USER_TOKEN, store, cluster_id, user, admin=False)


def _ensure_token(path: Path, store: Store, cluster_id: str, user: str, admin: bool) -> Path:
    # A token file the database does not know (the database was deleted or replaced) is renewed:
    # otherwise whoever reads it would be refused forever.
    if not _known(path, store):
        secret = create_user_token(store, cluster_id, user, admin=admin, now=datetime.now(timezone.utc))
        _write_private(path, secret + "\n")
    return path


def _known(path: Path, store: Store) -> bool:
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        return False
    with store.read() as tx:
        return bool(secret) and tx.token_with_user(hash_secret(secret)) is not None
