"""The only place SQLite and PostgreSQL are treated differently: connection set-up and locking.

SQLite has one writer: write transactions start with `BEGIN IMMEDIATE` (and one writer per
process at a time, so threads queue on a lock instead of spinning on SQLITE_BUSY). That makes
every read-check-write in a write transaction atomic. PostgreSQL runs writers concurrently, so
services lock what they are about to change: container rows with `FOR UPDATE` (portable, SQLite
ignores it) and reuse keys with a transaction-scoped advisory lock.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import Engine, Insert, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL errors that mean "a concurrent transaction won; run it again".
_PG_RETRYABLE = {"40001", "40P01"}


def prepare_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event, not the sqlite3 module, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("crunch_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def writer_lock(engine: Engine) -> AbstractContextManager[object]:
    """A per-process lock serialising writers where the database only has one writer."""
    return threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()


def lock_key(conn: Connection, key: str) -> None:
    """Serialise transactions working on the same key (e.g. a reuse key) until commit."""
    if conn.dialect.name == "postgresql":
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:n)"), {"n": number})


def insert_ignoring_duplicates(dialect_name: str, table: Table) -> Insert:
    """INSERT that does nothing when the primary key exists (same SQL, two dialect classes)."""
    module = postgresql if dialect_name == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def is_retryable(error: BaseException) -> bool:
    """A transaction that lost a race with another and may simply be run again."""
    if not isinstance(error, DBAPIError):
        return False
    code = getattr(error.orig, "sqlstate", None)
    if code in _PG_RETRYABLE:
        return True
    return "database is locked" in str(error.orig)
