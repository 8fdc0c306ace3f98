"""Where a dispatcher runs crunch-run: one small interface, one module per backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Capacity:
    vcpus: float
    ram: int
    supervisors: int = 4  # workflow runners at once (not counted against vCPUs: SPEC §6)


class Backend(Protocol):
    name: str
    capacity: Capacity

    def start(self, container: dict[str, Any]) -> None:
        """Launch crunch-run for a container this dispatcher has just locked."""

    def alive(self) -> set[str]:
        """Uuids of the containers whose crunch-run is running (started or adopted); reaps the rest."""
