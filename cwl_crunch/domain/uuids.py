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
UUID_RE = re.compile(r"^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}\Z")
CLUSTER_RE = re.compile(r"^[a-z0-9]{5}\Z")


def _base36(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def new_uuid(cluster_id: str, type_infix: str) -> str:
    # One draw of the whole number, not one per character (which costs a system call each).
    return f"{cluster_id}-{type_infix}-{_base36(secrets.randbelow(36**15), 15)}"


def type_of(uuid: str) -> str | None:
    """The type infix of a well-formed uuid, else None."""
    return uuid[6:11] if UUID_RE.match(uuid) else None


def new_secret() -> str:
    """A token secret: 48 base36 characters (~248 bits)."""
    return _base36(secrets.randbelow(36**48), 48)
