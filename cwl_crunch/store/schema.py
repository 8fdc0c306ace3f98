"""Table definitions (SQLAlchemy Core). Migrations in `migrations/versions` create the same schema."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class HasError(ColumnElement[bool]):
    """`runtime_status` carries an `error` key: compiled per dialect for the generated column."""

    inherit_cache = True


@compiles(HasError, "sqlite")
def _has_error_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "json_extract(runtime_status, '$.error') IS NOT NULL"


@compiles(HasError, "postgresql")
def _has_error_postgresql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "(runtime_status -> 'error') IS NOT NULL"


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


users = Table(
    "users",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    _ts("created_at", False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("user_uuid", String(27), nullable=False, index=True),
    # Set for container tokens: the token is confined to this container.
    Column("container_uuid", String(27), nullable=True, index=True),
    _ts("expires_at"),
    _ts("created_at", False),
)

_definition = (
    ("command", Json, False),
    ("cwd", Text, False),
    ("environment", Json, False),
    ("output_path", Text, False),
    ("output_glob", Json, False),
    ("container_image", Text, False),
    ("mounts", Json, False),
    ("secret_mounts", Json, True),
    ("runtime_constraints", Json, False),
    ("scheduling_parameters", Json, False),
)


def _definition_columns(nullable: bool) -> list[Column]:
    return [Column(name, type_, nullable=nullable or null_ok) for name, type_, null_ok in _definition]


containers = Table(
    "containers",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("state", String(16), nullable=False),
    *_definition_columns(nullable=False),
    Column("priority", BigInteger, nullable=False, default=0),
    Column("progress", Float, nullable=True),
    Column("runtime_status", Json, nullable=False),
    # STORED (persisted): PostgreSQL 18+ would otherwise make it VIRTUAL, which cannot be indexed.
    Column("has_error", Boolean, Computed(HasError(), persisted=True)),
    Column("scheduling_status", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=True),
    Column("log", Text, nullable=True),
    Column("output", Text, nullable=True),
    Column("output_properties", Json, nullable=False),
    Column("lock_count", Integer, nullable=False, default=0),
    Column("locked_by_uuid", String(27), nullable=True),
    Column("dispatcher_uuid", String(27), nullable=True, index=True),
    Column("auth", Text, nullable=True),
    _ts("started_at"),
    _ts("finished_at"),
    _ts("heartbeat_at"),
    Column("cost", Float, nullable=False, default=0.0),
    Column("subrequests_cost", Float, nullable=False, default=0.0),
    Column("reuse_key", String(64), nullable=False),
    Column("reuse_digests", Json, nullable=False),
    Column("command_digest", String(16), nullable=False, index=True),
    _ts("created_at", False),
    _ts("modified_at", False),
    # The equality and sort columns of the reuse tiers (migration 0002 says why).
    Index("ix_containers_reuse", "reuse_key", "state", "priority"),
    Index("ix_containers_state_priority", "state", "priority"),
    Index("ix_containers_state_error", "state", "has_error"),
)
# "Running containers with an error" and other runtime_status queries (PostgreSQL only).
Index("ix_containers_runtime_status_gin", containers.c.runtime_status, postgresql_using="gin").ddl_if(
    dialect="postgresql"
)

container_requests = Table(
    "container_requests",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("owner_uuid", String(27), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("properties", Json, nullable=False),
    Column("state", String(16), nullable=False),
    Column("requesting_container_uuid", String(27), nullable=True),
    Column("container_uuid", String(27), nullable=True),
    Column("container_count", Integer, nullable=False, default=0),
    Column("container_count_max", Integer, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("held", Boolean, nullable=False, default=False),
    Column("use_existing", Boolean, nullable=False, default=True),
    *_definition_columns(nullable=True),
    Column("output_name", Text, nullable=True),
    Column("output_properties", Json, nullable=False),
    Column("log_uuid", String(27), nullable=True),
    Column("output_uuid", String(27), nullable=True),
    Column("cumulative_cost", Float, nullable=False, default=0.0),
    Column("runtime_token", Text, nullable=True),
    _ts("created_at", False),
    _ts("modified_at", False),
    _ts("expires_at"),
    Index("ix_container_requests_owner_created", "owner_uuid", "created_at"),
    Index("ix_container_requests_state", "state"),
    Index("ix_container_requests_container", "container_uuid", "state", "created_at"),
    Index("ix_container_requests_requesting", "requesting_container_uuid", "state", "created_at"),
    # The dashboard's pages of top-level requests, newest first (migration 0004 says why).
    Index("ix_container_requests_owner_top", "owner_uuid", "requesting_container_uuid", "created_at", "uuid"),
    Index("ix_container_requests_top", "requesting_container_uuid", "created_at", "uuid"),
)

# Every container a request has used, in order: visibility, previous attempts, costs.
request_containers = Table(
    "request_containers",
    metadata,
    Column("request_uuid", String(27), primary_key=True),
    Column("container_uuid", String(27), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Index("ix_request_containers_container", "container_uuid"),
)

collections = Table(
    "collections",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("owner_uuid", String(27), nullable=False, index=True),
    Column("name", Text, nullable=False, default=""),
    Column("portable_data_hash", String(90), nullable=False),
    Column("manifest", Json, nullable=False),
    Column("properties", Json, nullable=False),
    _ts("created_at", False),
    _ts("modified_at", False),
    _ts("trash_at"),
    # The oldest collection with some content is a walk to the index's first entry for it, however
    # many share the content (migration 0005).
    Index("ix_collections_pdh_created", "portable_data_hash", "created_at"),
)

dispatchers = Table(
    "dispatchers",
    metadata,
    Column("uuid", String(27), primary_key=True),
    Column("name", Text, nullable=False, default=""),
    Column("hostname", Text, nullable=False, default=""),
    Column("backend", String(32), nullable=False, default=""),
    Column("token_uuid", String(27), nullable=False),
    Column("alive", Boolean, nullable=False, default=True),
    _ts("created_at", False),
    _ts("last_ping_at", False),
)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("object_uuid", String(27), nullable=False, index=True),
    Column("object_kind", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("properties", Json, nullable=False),
    _ts("created_at", False),
    Index("ix_events_created_at", "created_at"),
)

# Log lines of Locked/Running containers, as crunch-run sends them (SPEC §7 "Live logs"), until
# the container's log collection is saved. `data` is whole timestamped lines of one file.
live_logs = Table(
    "live_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("container_uuid", String(27), nullable=False),
    Column("file", String(255), nullable=False),
    Column("data", Text, nullable=False),
    _ts("created_at", False),
    Index("ix_live_logs_container", "container_uuid", "file", "id"),
)
