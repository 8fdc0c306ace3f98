"""Fixtures shared by every test: databases of each dialect and a running service over them."""

from __future__ import annotations

import os
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cwl_crunch.store import Store, open_store
from tests.support.postgres import ThrowawayPostgres, available
from tests.support.service import RunningService, start_service

# podman, bubblewrap, Slurm and chromium (the dashboard's browser tests) fixtures
pytest_plugins = ["tests.support.engines", "tests.support.slurm", "tests.support.browser"]

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
_TEMPLATE_DB = "crunch_template"


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """One throwaway PostgreSQL server for the session; required under CI=true."""
    reason = available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    server = ThrowawayPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres: ThrowawayPostgres) -> str:
    """A migrated database that per-test databases are cloned from (faster than migrating each)."""
    store = open_store(postgres.create_database(_TEMPLATE_DB))
    store.dispose()
    return _TEMPLATE_DB


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "crunch.sqlite3"
    store = open_store(f"sqlite:///{path}")
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


@pytest.fixture(params=DIALECTS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "crunch.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    postgres: ThrowawayPostgres = request.getfixturevalue("postgres")
    name = f"test_{uuidlib.uuid4().hex[:12]}"
    yield postgres.create_database(name, template=request.getfixturevalue("postgres_template"))
    postgres.drop_database(name)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


@pytest.fixture
def service(store: Store) -> Iterator[RunningService]:
    """The API server over real HTTP on loopback, with a hand-driven clock and janitor."""
    running = start_service(store)
    yield running
    running.stop()


@pytest.fixture
def blob_service(store: Store, tmp_path: Path) -> Iterator[RunningService]:
    """The same with a blob store, against which manifests are checked."""
    running = start_service(store, blob_root=tmp_path / "blobs")
    yield running
    running.stop()
