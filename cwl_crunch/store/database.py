"""The Store: engine, migrations and transaction boundaries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from ..domain.errors import Conflict
from . import dialect, jsoncodec
from .repository import Repository
from .schema import metadata

T = TypeVar("T")
log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0005"  # the newest migration's revision (a test checks it against the migrations)
_ATTEMPTS = 8


def normalise_url(url: str) -> str:
    """Accept `postgresql://…` and use the psycopg 3 driver for it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Store:
    """Owns the engine. Services open transactions with `read()`, `write()` or `transact()`."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        kwargs: dict[str, object] = {"pool_pre_ping": False, "json_serializer": jsoncodec.dumps,
                                     "json_deserializer": jsoncodec.loads}
        if self.url.startswith("sqlite") and make_url(self.url).database in (None, "", ":memory:"):
            # One shared connection: for single-threaded tools and experiments, not for a server.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif self.url.startswith("sqlite"):
            kwargs.update(pool_size=8, max_overflow=56)
        else:
            kwargs.update(pool_size=16, max_overflow=32)
        self.engine = create_engine(self.url, **kwargs)
        dialect.prepare_engine(self.engine)
        self.dialect = self.engine.dialect.name
        self._writer = dialect.writer_lock(self.engine)
        # PostgreSQL runs write transactions side by side; SQLite has one writer at a time.
        self.concurrent_writers = self.dialect != "sqlite"
        self._on_events: list[Callable[[list[dict[str, Any]]], None]] = []

    def migrate(self, *, sqlite_shortcut: bool = True) -> None:
        """Bring the schema to the newest migration. A SQLite database needs Alembic (its import
        and the migrations: about 0.2 s, on the path of every cold start of the embedded service)
        only to be upgraded: an empty one is created from the schema itself, the same tables and
        indexes the migrations build (a test compares them), and stamped with the newest revision;
        one at the newest revision already is left as it is."""
        if sqlite_shortcut and self.dialect == "sqlite" and self._sqlite_at_head():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _sqlite_at_head(self) -> bool:
        """Whether the database is at HEAD_REVISION, after creating it there if it was empty
        (in a write transaction: one creator at a time). False: Alembic has work to do."""
        with self.engine.connect() as conn, conn.execution_options(crunch_write=True).begin():
            tables = set(inspect(conn).get_table_names())
            if not tables:
                metadata.create_all(conn)
                conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL,"
                                     " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
                conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,))
                return True
            if "alembic_version" not in tables:
                return False
            versions = [row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
            return versions == [HEAD_REVISION]

    def on_events(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        """Call `callback(events)` after every committed write that recorded events, with those
        events as `Repository.flush_events` returns them (the rows as stored, ids included). It
        wakes event streams; a write without events, such as a collection or a heartbeat, wakes
        nobody. Callbacks of concurrent writes may come in either order."""
        self._on_events.append(callback)

    @contextmanager
    def read(self) -> Iterator[Repository]:
        with self.engine.connect() as conn, conn.begin():
            yield Repository(conn)

    @contextmanager
    def write(self) -> Iterator[Repository]:
        with self._writer, self.engine.connect() as conn:
            conn = conn.execution_options(crunch_write=True)
            with conn.begin():
                tx = Repository(conn)
                yield tx
                written = tx.flush_events()
        if written:
            for callback in self._on_events:
                callback(written)

    def transact(self, work: Callable[[Repository], T]) -> T:
        """Run `work` in a write transaction, again if it lost a race with another writer."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.write() as tx:
                    return work(tx)
            except Exception as error:  # noqa: BLE001 - filtered just below
                if not dialect.is_retryable(error):
                    raise
                log.info("transaction conflict, retrying", extra={"action": "retry", "attempt": attempt})
                time.sleep(0.005 * attempt)
        raise Conflict("the database stayed too busy; try again")

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, migrate: bool = True) -> Store:
    store = Store(url)
    if migrate:
        store.migrate()
    return store
