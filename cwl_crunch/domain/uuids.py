"""Arvados-shaped identifiers: `<cluster>-<type>-<15 base36 chars>`."""

from __future__ import annotations

import re
import secrets

CONTAINER_REQUEST = "xvhdp"
CONTAINER = "dz642"
COLLECTION = "4zz18"
TOKEN = "gj3su"
USER = "tpzed"
DISPATCHER = "dsptc"

KIND_OF_TYPE = {
    CONTAINER_REQUEST: "arvados#containerRequest",
    CONTAINER: "arvados#container",
    COLLECTION: "arvados#collection",
    TOKEN: "arvados#apiClientAuthorization",
    USER: "arvados#user",
    DISPATCHER: "arvados#dispatcher",
}
TYPE_OF_KIND = {kind: infix for infix, kind in KIND_OF_TYPE.items()}

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
UUID_RE = re.compile(r"^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}$")
CLUSTER_RE = re.compile(r"^[a-z0-9]{5}$")


def new_uuid(cluster_id: str, type_infix: str) -> str:
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(15))
    return f"{cluster_id}-{type_infix}-{tail}"


def type_of(uuid: str) -> str | None:
    """The type infix of a well-formed uuid, else None."""
    return uuid[6:11] if UUID_RE.match(uuid) else None


def new_secret() -> str:
    """A token secret: 48 base36 characters (~248 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(48))
