"""Staging (SPEC §7 step 2): the container's mounts as host paths bound at their targets, and
the description of the process a runtime starts with them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .keep import Keep
from .runtimes import Bind, ProcessSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class StagingError(Exception):
    """A mount cannot be staged: the container is cancelled with cause `setup`, naming it."""


def prefetch(keep: Keep, mounts: dict[str, Any]) -> None:
    """Ask for the first collection mount's manifest now (`Keep.prefetch`): the server answers
    while crunch-run sets up its cgroups and logs, and `stage_mounts` reads the answer."""
    for mount in mounts.values():
        if mount.get("kind") == "collection" and isinstance(mount.get("portable_data_hash"), str):
            keep.prefetch(mount["portable_data_hash"])
            return


def stage_mounts(keep: Keep, mounts: dict[str, Any], output_path: str, place: Path,
                 say: Callable[[str], None]) -> tuple[list[Bind], dict[str, Path]]:
    """Binds for the mounts; `stdin`/`stdout`/`stderr` mounts become host files instead.

    A mount below the output path is copied into it rather than bound (as a workflow's initial
    work directory needs): the process may change it, and it becomes part of the output.
    """
    binds: list[Bind] = []
    streams: dict[str, Path] = {}
    for index, (target, mount) in enumerate(sorted(mounts.items())):
        if target in ("stdout", "stderr"):
            continue  # files under output_path, resolved once the binds are known
        try:
            source = _stage_one(keep, place / str(index), mount)
            inside = _below(target, output_path) and mount.get("kind") != "tmp"
            if inside:
                _copy_into(source, host_path(binds, target, output_path))
        except Exception as error:  # noqa: BLE001 - whatever went wrong, reported naming the mount
            raise StagingError(f"cannot stage mount {target}: {error}") from error
        if target == "stdin":
            streams["stdin"] = source
            continue
        if not inside:
            binds.append(Bind(source, target, writable=mount.get("kind") == "tmp"))
        say(f"mount {target}: {mount.get('kind')}{' (copied into the output)' if inside else ''}")
    for name in ("stdout", "stderr"):
        if name in mounts:
            path = mounts[name].get("path", "")
            host = host_path(binds, path, output_path)
            if host is None:
                raise StagingError(f"cannot stage mount {name}: {path!r} is not a file under output_path")
            host.parent.mkdir(parents=True, exist_ok=True)
            streams[name] = host
    return binds, streams


def _stage_one(keep: Keep, place: Path, mount: dict[str, Any]) -> Path:
    kind = mount.get("kind")
    if kind == "collection":
        pdh = mount.get("portable_data_hash", "")
        source = keep.materialise(pdh) / mount.get("path", "").lstrip("/")
        if not source.exists():
            raise StagingError(f"{mount.get('path')!r} is not in collection {pdh}")
        return source
    if kind == "tmp":
        place.mkdir(parents=True)
        return place
    if kind in ("json", "text"):
        place.parent.mkdir(parents=True, exist_ok=True)
        content = mount.get("content")
        place.write_text(json.dumps(content) if kind == "json" else str(content))
        return place
    raise StagingError(f"mounts of kind {kind!r} are not supported")


def _below(target: str, output_path: str) -> bool:
    return target.startswith(output_path.rstrip("/") + "/")


def _copy_into(source: Path, host: Path | None) -> None:
    """A writable copy (never a link: the source may be a shared cache or the blob store)."""
    if host is None:
        raise StagingError("it is below the output path, which is not a tmp mount")
    host.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, host, copy_function=shutil.copyfile, dirs_exist_ok=True)
        for root, dirs, _ in os.walk(host):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
    else:
        shutil.copyfile(source, host)
    os.chmod(host, 0o755 if host.is_dir() else 0o644)


def host_path(binds: list[Bind], path: str, under: str) -> Path | None:
    """The host path of `path` inside the container, if it is under `under` and a bind holds it."""
    if not path.startswith("/") or ".." in path.split("/") or not (path + "/").startswith(under.rstrip("/") + "/"):
        return None
    for bind in sorted(binds, key=lambda b: len(b.target), reverse=True):
        target = bind.target.rstrip("/")
        if path == target or path.startswith(target + "/"):
            return bind.source / path[len(target):].lstrip("/")
    return None


def process_spec(container: dict[str, Any], api_url: str, binds: list[Bind], streams: dict[str, Path],
                 hidden: list[Path]) -> ProcessSpec:
    """The process to start: command, environment and limits from the container record.

    With the `API` constraint the process gets network and the variables to reach the API as
    its container (SPEC §7 step 5); without it, neither.
    """
    constraints = container.get("runtime_constraints") or {}
    environment = {"PATH": DEFAULT_PATH, "HOME": container["output_path"], "TMPDIR": "/tmp",
                   **(container.get("environment") or {})}
    if constraints.get("API"):
        environment.update(CRUNCH_API=api_url, CRUNCH_API_TOKEN=container["auth"],
                           CRUNCH_CONTAINER_UUID=container["uuid"])
    return ProcessSpec(
        command=list(container["command"]),
        cwd=container.get("cwd") or container["output_path"],
        environment=environment,
        binds=binds,
        stdin=streams.get("stdin"),
        network=bool(constraints.get("API")),
        ram=constraints.get("ram"),
        vcpus=constraints.get("vcpus"),
        hidden=hidden,
        name=container["uuid"],
    )
