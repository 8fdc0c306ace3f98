"""Who is asking: the user behind a token, and what the token is confined to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    user_uuid: str
    token_uuid: str
    is_admin: bool = False
    # Set for container tokens, which act only on behalf of this container.
    container_uuid: str | None = None

    @property
    def is_container(self) -> bool:
        return self.container_uuid is not None
