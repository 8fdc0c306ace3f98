"""The Alembic migrations build exactly the schema in `cwl_crunch.store.schema`, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Index, inspect, text

from cwl_crunch.store import Store, open_store
from cwl_crunch.store.database import HEAD_REVISION, MIGRATIONS
from cwl_crunch.store.schema import metadata
from tests.support.postgres import ThrowawayPostgres

CONTAINER_UUID = "zzzzz-dz642-000000000000001"
GIN_INDEX = "ix_containers_runtime_status_gin"
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crunch.db'}"


@pytest.fixture
def postgresql_url(postgres: ThrowawayPostgres) -> Iterator[str]:
    name = f"migrations_{uuidlib.uuid4().hex[:12]}"
    yield postgres.create_database(name)
    postgres.drop_database(name)


@pytest.fixture(params=DIALECTS)
def empty_url(request: pytest.FixtureRequest) -> str:
    """The URL of a brand-new, empty database of each dialect."""
    return request.getfixturevalue(f"{request.param}_url")


@contextmanager
def _opened(url: str, *, by_alembic: bool = False) -> Iterator[Store]:
    """The store at `url`, migrated as `open_store` does it, or (`by_alembic`) by running every
    migration even on SQLite, where an empty database is otherwise created from the schema."""
    store = Store(url) if by_alembic else open_store(url)
    try:
        if by_alembic:
            store.migrate(sqlite_shortcut=False)
        yield store
    finally:
        store.dispose()


@pytest.fixture
def store(empty_url: str) -> Iterator[Store]:
    """A database brought to head by the migrations themselves (what these tests are about)."""
    with _opened(empty_url, by_alembic=True) as opened:
        yield opened


def _sqlite_shape(store: Store) -> dict[str, object]:
    """Every table's columns (type, nullability, default, key, generated), indexes (uniqueness,
    origin, partial, columns) and foreign keys, as SQLite itself reports them."""
    shape: dict[str, object] = {}
    with store.engine.connect() as conn:
        names = [row[0] for row in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for name in names:
            columns = [tuple(row[1:]) for row in conn.exec_driver_sql(f"PRAGMA table_xinfo('{name}')")]
            indexes = {row[1]: (row[2], row[3], row[4], tuple(column[2] for column in conn.exec_driver_sql(
                f"PRAGMA index_xinfo('{row[1]}')"))) for row in conn.exec_driver_sql(f"PRAGMA index_list('{name}')")}
            keys = sorted(tuple(row[2:]) for row in conn.exec_driver_sql(f"PRAGMA foreign_key_list('{name}')"))
            shape[name] = (columns, indexes, keys)
    return shape


def test_the_head_revision_the_store_knows_is_the_newest_migration() -> None:
    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == HEAD_REVISION


def test_an_empty_sqlite_database_is_created_from_the_schema_as_the_migrations_would_build_it(
        tmp_path: Path) -> None:
    with _opened(f"sqlite:///{tmp_path / 'migrated.db'}", by_alembic=True) as migrated, \
            _opened(f"sqlite:///{tmp_path / 'created.db'}") as created:
        assert _sqlite_shape(created) == _sqlite_shape(migrated)
        with created.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
        created.migrate(sqlite_shortcut=False)  # Alembic agrees: nothing to do
        with created.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
        assert _sqlite_shape(created) == _sqlite_shape(migrated)
        with created.engine.begin() as conn:  # and its migrations run on it both ways
            command.downgrade(_alembic_config(conn), "base")
        created.migrate()
        assert _sqlite_shape(created) == _sqlite_shape(migrated)


def test_a_sqlite_database_behind_the_newest_migration_is_upgraded_by_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with _opened(url, by_alembic=True) as store, store.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "-1")
        assert MigrationContext.configure(conn).get_current_revision() != HEAD_REVISION
    with _opened(url) as store, store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION


def _alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _is_known_false_positive(diff: object, dialect: str) -> bool:
    """Alembic autogenerate ignores `Index.ddl_if()` (sqlalchemy/alembic#1491): on SQLite it asks
    for the PostgreSQL-only GIN index that the migration rightly does not create there."""
    return (
        dialect == "sqlite"
        and isinstance(diff, tuple)
        and diff[0] == "add_index"
        and isinstance(diff[1], Index)
        and diff[1].name == GIN_INDEX
    )


@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")
def test_open_store_migrates_an_empty_database_to_head(empty_url: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with _opened(empty_url) as store:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
            assert set(metadata.tables) <= set(inspect(conn).get_table_names())
        store.migrate()  # a second run is a no-op
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head


def test_migrated_schema_matches_the_metadata(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if not _is_known_false_positive(d, store.dialect)] == []


def test_downgrade_to_base_and_upgrade_again(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "base")
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    store.migrate()
    with store.engine.connect() as conn:
        assert set(metadata.tables) <= set(inspect(conn).get_table_names())


def _container(runtime_status: dict) -> dict:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return {
        "uuid": CONTAINER_UUID,
        "state": "Running",
        "command": ["echo", "hi"],
        "cwd": "/tmp",
        "environment": {},
        "output_path": "/out",
        "output_glob": [],
        "container_image": "debian:12",
        "mounts": {},
        "secret_mounts": None,
        "runtime_constraints": {"vcpus": 1, "ram": 1 << 20},
        "scheduling_parameters": {},
        "priority": 1,
        "runtime_status": runtime_status,
        "scheduling_status": "",
        "output_properties": {},
        "lock_count": 0,
        "cost": 0.0,
        "subrequests_cost": 0.0,
        "reuse_key": "0" * 64,
        "reuse_digests": {},
        "command_digest": "0" * 16,
        "created_at": now,
        "modified_at": now,
    }


def test_has_error_follows_the_runtime_status_error_key(store: Store) -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with store.write() as tx:
        tx.insert_container(_container({"warning": "slow"}), now)
    with store.read() as tx:
        old = tx.get_container(CONTAINER_UUID)
        assert old is not None and old["has_error"] is False
    with store.write() as tx:
        tx.update_container(old, {"runtime_status": {"error": "boom", "errorDetail": "x"}}, now)
    with store.read() as tx:
        failing = tx.get_container(CONTAINER_UUID)
        assert failing is not None and failing["has_error"] is True
    with store.write() as tx:
        tx.update_container(failing, {"runtime_status": {}}, now)
    with store.read() as tx:
        assert tx.get_container(CONTAINER_UUID)["has_error"] is False  # type: ignore[index]


def test_sqlite_has_error_is_a_generated_indexed_column(sqlite_url: str) -> None:
    with _opened(sqlite_url) as store, store.engine.connect() as conn:
        # table_xinfo `hidden`: 2 = virtual generated, 3 = stored generated.
        hidden = {row.name: row.hidden for row in conn.exec_driver_sql("PRAGMA table_xinfo('containers')")}
        assert hidden["has_error"] == 3
        indexes = {row.name for row in conn.exec_driver_sql("PRAGMA index_list('containers')")}
        assert "ix_containers_state_error" in indexes
        assert GIN_INDEX not in indexes
        columns = [row.name for row in conn.exec_driver_sql("PRAGMA index_info('ix_containers_state_error')")]
        assert columns == ["state", "has_error"]


@pytest.mark.postgresql
def test_postgresql_runtime_status_is_jsonb_with_a_gin_index(postgresql_url: str) -> None:
    with _opened(postgresql_url) as store, store.engine.connect() as conn:
        columns = {
            row.column_name: row
            for row in conn.execute(
                text(
                    "SELECT column_name, data_type, is_generated, generation_expression"
                    " FROM information_schema.columns WHERE table_name = 'containers'"
                )
            )
        }
        assert columns["runtime_status"].data_type == "jsonb"
        assert columns["has_error"].data_type == "boolean"
        assert columns["has_error"].is_generated == "ALWAYS"
        assert "'error'" in columns["has_error"].generation_expression
        stored = conn.execute(
            text(
                "SELECT attgenerated FROM pg_attribute"
                " WHERE attrelid = 'containers'::regclass AND attname = 'has_error'"
            )
        ).scalar_one()
        assert stored == "s"
        indexes = dict(
            conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'containers'")).all()
        )
        assert "USING gin (runtime_status)" in indexes[GIN_INDEX]
        assert "(state, has_error)" in indexes["ix_containers_state_error"]
