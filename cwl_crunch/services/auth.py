"""Tokens and users: who is asking, and bootstrapping the first admin."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ..domain.errors import Invalid, Unauthenticated
from ..domain.principal import Principal
from ..domain.uuids import TOKEN, USER, new_secret, new_uuid
from ..store import Store
from ..store.repository import Repository
from .context import Context

MAX_TOKEN_LENGTH = 512


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def cached_principal(ctx: Context, secret: str | None) -> Principal | None:
    """The principal of a recently seen user token, without touching the database; else None."""
    if not secret or len(secret) > MAX_TOKEN_LENGTH:
        return None
    token = ctx.tokens.get(hash_secret(secret))
    return None if token is None else _principal(ctx, token)


def authenticate(ctx: Context, secret: str | None) -> Principal:
    """The principal behind a bearer token, or Unauthenticated."""
    if not secret or len(secret) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("missing or invalid token: send Authorization: Bearer <token>")
    secret_hash = hash_secret(secret)
    token = ctx.tokens.get(secret_hash)
    if token is None:
        with ctx.store.read() as tx:
            token = tx.token_with_user(secret_hash)
        if token is None:
            raise Unauthenticated("missing or invalid token: send Authorization: Bearer <token>")
        ctx.tokens.put(secret_hash, token)
    return _principal(ctx, token)


def _principal(ctx: Context, token: dict[str, Any]) -> Principal:
    if token["expires_at"] is not None and token["expires_at"] <= ctx.now():
        raise Unauthenticated("missing or invalid token: send Authorization: Bearer <token>")
    return Principal(
        user_uuid=token["user_uuid"],
        token_uuid=token["uuid"],
        is_admin=bool(token["is_admin"]) and token["container_uuid"] is None,
        container_uuid=token["container_uuid"],
    )


def issue_token(
    tx: Repository, cluster_id: str, user_uuid: str, now: datetime, container_uuid: str | None = None
) -> tuple[str, str]:
    """Create a token; returns (token uuid, secret). Only the hash of the secret is stored."""
    secret = new_secret()
    uuid = new_uuid(cluster_id, TOKEN)
    tx.insert_token(
        {
            "uuid": uuid,
            "secret_hash": hash_secret(secret),
            "user_uuid": user_uuid,
            "container_uuid": container_uuid,
            "expires_at": None,
            "created_at": now,
        }
    )
    return uuid, secret


def create_user_token(store: Store, cluster_id: str, name: str, admin: bool, now: datetime) -> str:
    """A new token for user `name` (created if missing; `admin` promotes a new user only)."""
    if not name or len(name) > 255 or "\0" in name:
        raise Invalid("user: a name of 1 to 255 characters is required")
    with store.write() as tx:
        user = tx.user_by_name(name)
        if user is None:
            user = tx.insert_user({"uuid": new_uuid(cluster_id, USER), "name": name, "is_admin": admin, "created_at": now})
        elif admin and not user["is_admin"]:
            raise Invalid(f"user {name!r} exists and is not an admin")
        _, secret = issue_token(tx, cluster_id, user["uuid"], now)
    return secret
