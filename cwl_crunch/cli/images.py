"""`crunchctl image put`: an image as a collection holding one `docker save` tarball (SPEC §7 step 3).

Images then travel like data: workers without registry access load them from the blob store,
once each, and the image's hash is part of the container's reuse key.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..client import Client
from ..runner.keep import store_file_over_api


def put_image(api: Client, image: str, engine: str | None = None) -> str:
    """Upload `image` (a tarball path, or a reference the local engine has); its collection's hash."""
    path = Path(image)
    if path.is_file():
        return _put_tarball(api, path, path.name)
    engine = engine or shutil.which("podman") or shutil.which("docker")
    if engine is None:
        raise RuntimeError(f"{image!r} is not a file, and there is no podman or docker to save it with")
    with tempfile.TemporaryDirectory(prefix="crunch-image-") as tmp:
        tarball = Path(tmp) / "image.tar"
        arguments = [engine, "save", "--output", str(tarball)]
        if Path(engine).name.startswith("podman"):
            arguments += ["--format", "docker-archive"]
        saved = subprocess.run([*arguments, image], capture_output=True, text=True)
        if saved.returncode != 0:
            raise RuntimeError(f"{Path(engine).name} could not save {image}: {saved.stderr.strip()}")
        return _put_tarball(api, tarball, _file_name(image))


def _put_tarball(api: Client, tarball: Path, name: str) -> str:
    entry = store_file_over_api(api, tarball)
    record = api.create("collections", {"name": f"image {name}", "manifest": {name: entry},
                                        "properties": {"type": "container_image"}})
    return record["portable_data_hash"]


def _file_name(reference: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in reference.rsplit("/", 1)[-1])
    return f"{safe or 'image'}.tar"
