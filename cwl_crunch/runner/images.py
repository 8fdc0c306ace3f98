"""A container that names an image: the engine runtime that runs it, and the image made ready
for it (a reference as given, or a collection holding a `docker save` tarball, loaded once per
worker). What cannot be done is a `Failure` with cause `setup`, or `ImageNotFound`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from ..client import ApiError
from ..domain.validation import PDH_RE
from .keep import Keep
from .outcome import Failure
from .runtimes import ImageNotFound
from .runtimes.docker import DockerRuntime


def engine_runtime(image: str, engine: str | None) -> DockerRuntime:
    """The named docker-compatible engine, else podman or docker, whichever this worker has."""
    engine = engine or next((e for e in ("podman", "docker") if shutil.which(e)), None)
    if engine is None:
        raise Failure(f"container_image {image!r}: this worker has no container engine (docker or podman)",
                      cause="setup")
    return DockerRuntime(engine)


def ready_image(runtime: DockerRuntime, image: str, keep: Keep, status: Callable[[dict[str, Any]], None],
                say: Callable[[str], None]) -> str:
    """An engine reference as is; a collection's hash → its image tarball, loaded once per worker."""
    if not PDH_RE.match(image):
        return image
    status({"activity": "loading image"})
    say(f"loading image from collection {image}")
    try:
        tarball = keep.image_tarball(image)
    except (ApiError, OSError, ValueError) as error:
        raise ImageNotFound(f"collection {image}: {error}") from error
    return runtime.load_tarball(tarball)
