"""Request bodies: types checked here (and published in the OpenAPI document), rules in the domain."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

JsonObject = dict[str, Any]


# Responses cannot serialise JSON nested much deeper (the limit is near 255 levels), and no real
# document comes close to this.
MAX_DEPTH = 64


def _reject_unstorable(value: Any, path: str = "body", depth: int = 0) -> None:
    """Refuse what the databases cannot store or we cannot send back: NUL characters, lone
    surrogates (not valid UTF-8), non-finite numbers, and absurdly deep nesting."""
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"{path}: strings must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{path}: strings must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: numbers must be finite")
    elif isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            field = path.split("[")[0].split(".")[:2]  # e.g. body.properties: the full path is as deep
            raise ValueError(f"{'.'.join(field)}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _reject_unstorable(key, path)  # checked before it is quoted in a path
                _reject_unstorable(item, f"{path}.{key}", depth + 1)
        else:
            for index, item in enumerate(value):
                _reject_unstorable(item, f"{path}[{index}]", depth + 1)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        _reject_unstorable(data)
        return data

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ContainerRequestBody(Body):
    """A container request, or the attributes of one to change."""

    name: str | None = None
    description: str | None = None
    properties: JsonObject | None = None
    state: Literal["Uncommitted", "Committed", "Final"] | None = None
    priority: int | None = None
    use_existing: bool | None = None
    container_count_max: int | None = None
    command: list[str] | None = None
    cwd: str | None = None
    environment: dict[str, str] | None = None
    output_path: str | None = None
    output_glob: list[str] | None = None
    container_image: str | None = None
    mounts: dict[str, JsonObject] | None = None
    secret_mounts: dict[str, JsonObject] | None = None
    runtime_constraints: JsonObject | None = None
    scheduling_parameters: JsonObject | None = None
    output_name: str | None = None
    output_properties: JsonObject | None = None
    runtime_token: str | None = None
    expires_at: str | None = None


class ContainerUpdateBody(Body):
    state: Literal["Queued", "Locked", "Running", "Complete", "Cancelled"] | None = None
    runtime_status: JsonObject | None = None
    progress: float | None = None
    log: str | None = None
    output: str | None = None
    output_properties: JsonObject | None = None
    output_manifest: JsonObject | None = None  # saved as a collection; its hash becomes `output`
    log_manifest: JsonObject | None = None  # the same for `log`
    exit_code: int | None = None
    cost: float | None = None
    subrequests_cost: float | None = None
    scheduling_status: str | None = None


class LockBody(Body):
    dispatcher_uuid: str | None = None


class SchedulingStatusBody(Body):
    scheduling_status: str


class SchedulingStatusesBody(Body):
    statuses: dict[str, str]  # container uuid → its scheduling status


class LiveLogBody(Body):
    files: dict[str, str]


class DispatcherBody(Body):
    name: str | None = None
    hostname: str | None = None
    backend: str | None = None


class CollectionBody(Body):
    name: str | None = None
    manifest: JsonObject | None = None
    properties: JsonObject | None = None
    portable_data_hash: str | None = None
