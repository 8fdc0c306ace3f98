"""Statements the hot repository verbs run, built once with bound parameters.

Building and hashing a fresh select for every call cost more than running it.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    union_all,
    update,
)

from . import dialect
from .schema import (
    collections,
    container_requests,
    containers,
    request_containers,
    tokens,
    users,
)


@functools.cache
def by_uuid(table: Table, for_update: bool) -> Select[Any]:
    query = select(table).where(table.c.uuid == bindparam("uuid"))
    return query.with_for_update() if for_update else query


@functools.cache
def guarded(table: Table) -> Update:
    """UPDATE … SET <the columns given at execution> WHERE uuid = :_uuid AND state = :_state RETURNING *.

    The row comes back as the database now holds it (columns a concurrent writer changed, generated ones).
    """
    guard = (table.c.uuid == bindparam("_uuid")) & (table.c.state == bindparam("_state"))
    return update(table).where(guard).returning(*table.c)


def _reuse_tier(tier: str) -> Select[Any]:
    """The preferred container of one reuse tier (SPEC §5) for the key bound as `reuse_key`."""
    c = containers.c
    query = select(containers).where(c.reuse_key == bindparam("reuse_key"))
    if tier == "complete":
        log_exists = select(collections.c.uuid).where(
            collections.c.portable_data_hash == c.log, collections.c.trash_at.is_(None)
        )
        output_exists = select(collections.c.uuid).where(
            collections.c.portable_data_hash == c.output, collections.c.trash_at.is_(None)
        )
        query = query.where(
            c.state == "Complete", c.exit_code == 0, log_exists.exists(), c.output.is_(None) | output_exists.exists()
        ).order_by(c.finished_at, c.uuid)
    elif tier == "running":
        query = query.where(c.state == "Running", c.has_error.is_(False), c.priority > 0).order_by(
            c.progress.desc().nulls_last(), c.started_at, c.uuid
        )
    else:
        query = query.where(c.state == tier.capitalize()).order_by(c.priority.desc(), c.created_at, c.uuid)
    return query.limit(1)


REUSE_TIERS = {tier: _reuse_tier(tier) for tier in ("complete", "running", "locked", "queued")}


@functools.cache
def first_of_tiers(tiers: tuple[str, ...]) -> Select[Any]:
    """Each tier's candidate tagged with the tier's rank, the best rank first."""
    ranked = [
        select(REUSE_TIERS[tier].add_columns(literal(rank).label("tier_rank")).subquery())
        for rank, tier in enumerate(tiers)
    ]
    candidates = union_all(*ranked).subquery()
    return select(*[candidates.c[c.name] for c in containers.c]).order_by(candidates.c.tier_rank).limit(1)


def _committed_requests(column: Any) -> Select[Any]:
    r = container_requests.c
    return (
        select(container_requests)
        .where(column == bindparam("container_uuid"), r.state == "Committed")
        .order_by(r.created_at, r.uuid)
    )


COMMITTED_FOR = _committed_requests(container_requests.c.container_uuid)
COMMITTED_CHILDREN = _committed_requests(container_requests.c.requesting_container_uuid)
TOKEN_WITH_USER = (
    select(tokens, users.c.is_admin)
    .join(users, users.c.uuid == tokens.c.user_uuid)
    .where(tokens.c.secret_hash == bindparam("secret_hash"))
)
DELETE_CONTAINER_TOKENS = delete(tokens).where(tokens.c.container_uuid == bindparam("container_uuid"))


@functools.cache
def link_attempt(dialect_name: str) -> Insert:
    """INSERT a request↔container link unless it exists (both dialects say ON CONFLICT DO NOTHING)."""
    return dialect.insert_ignoring_duplicates(dialect_name, request_containers)


def _demand() -> Select[Any]:
    r = container_requests.c
    parent = containers.alias("parent")
    live = (r.container_uuid == bindparam("container_uuid")) & (r.state == "Committed") & (r.priority > 0)
    top = select(r.priority, r.created_at).where(live, r.held.is_(False), r.requesting_container_uuid.is_(None))
    top = top.order_by(r.priority.desc(), r.created_at).limit(1)
    child = (
        select(func.max(parent.c.priority))
        .select_from(container_requests.join(parent, parent.c.uuid == r.requesting_container_uuid))
        .where(live, r.held.is_(False), (parent.c.state == "Locked") | (parent.c.state == "Running"))
    )
    return select(
        exists().where(live).label("wanted"),
        top.with_only_columns(r.priority).scalar_subquery().label("top_priority"),
        top.with_only_columns(r.created_at).scalar_subquery().label("top_created_at"),
        child.scalar_subquery().label("child_priority"),
    )


DEMAND = _demand()
