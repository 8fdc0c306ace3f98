"""Final outputs: copied out of their collections into the output directory, like cwltool's."""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from cwltool.mutation import MutationManager
from cwltool.process import compute_checksums
from cwltool.utils import adjustDirObjs, get_listing, visit_class
from schema_salad.ref_resolver import file_uri, uri_file_path

from .keepfs import SCHEME, CollectionFsAccess, Keep, parse

OUTPUT_OBJECT = "cwl.output.json"


def relocate(output: dict[str, Any], outdir: str, keep: Keep) -> dict[str, Any]:
    """Copy every File and Directory of the output object into `outdir`; locations updated,
    directory listings filled in and checksums computed, as cwltool leaves them."""
    root = Path(outdir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    fs_access = CollectionFsAccess("", keep)
    adjustDirObjs(output, partial(get_listing, fs_access, recursive=True))
    Placer(keep, root).visit(output)
    visit_class(output, ("File",), lambda f: f.pop("contents", None))
    visit_class(output, ("File",), partial(compute_checksums, fs_access))
    return output


def write_output_object(output: dict[str, Any], outdir: str) -> None:
    """Inside a runner container: the output object with its `keep:` locations, nothing copied.

    Without cwltool's bookkeeping of InitialWorkDir file generations, which cwltool's main removes
    only after the executor returns, too late for this file."""
    visit_class(output, ("File",), MutationManager().unset_generation)
    Path(outdir).mkdir(parents=True, exist_ok=True)
    (Path(outdir) / OUTPUT_OBJECT).write_text(json.dumps(output, indent=2))


class Placer:
    def __init__(self, keep: Keep, root: Path) -> None:
        self.keep = keep
        self.root = root
        self.placed: dict[str, Path] = {}
        self.used: set[Path] = set()

    def visit(self, value: Any) -> None:
        if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
            self.place(value, self.root, top=True)
        elif isinstance(value, dict):
            for item in value.values():
                self.visit(item)
        elif isinstance(value, list):
            for item in value:
                self.visit(item)

    def place(self, obj: dict[str, Any], directory: Path, top: bool = False) -> None:
        source = obj.get("location", "")
        target = self.placed.get(source) if source and not source.startswith("_:") else None
        if target is None:
            target = self._unique(directory / obj["basename"]) if top else directory / obj["basename"]
            if obj["class"] == "File":
                self._copy_file(obj, target)
            else:
                self._copy_directory(obj, target)
            if source and not source.startswith("_:"):
                self.placed[source] = target
        obj["location"] = file_uri(str(target))
        obj.pop("path", None)
        for secondary in obj.get("secondaryFiles") or []:
            self.place(secondary, target.parent)
        for child in obj.get("listing") or []:
            if source.startswith("_:"):  # a literal directory: its entries are copied one by one
                self.place(child, target)
            else:  # copied whole already
                self._relabel(child, target)

    def _relabel(self, obj: dict[str, Any], directory: Path) -> None:
        """A listing entry already copied with its directory: only its location changes."""
        target = directory / obj["basename"]
        if not target.exists():
            self.place(obj, directory)
            return
        obj["location"] = file_uri(str(target))
        obj.pop("path", None)
        for child in obj.get("listing") or []:
            self._relabel(child, target)

    def _copy_file(self, obj: dict[str, Any], target: Path) -> None:
        source = obj.get("location", "")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith(SCHEME):
            pdh, path = parse(self.keep.current(source))
            self.keep.copy_to(self.keep.manifest(pdh).files[path], target)
        elif source.startswith(("file://", "/")):
            shutil.copyfile(uri_file_path(source) if source.startswith("file://") else source, target)
        else:
            target.write_text(str(obj.get("contents", "")))

    def _copy_directory(self, obj: dict[str, Any], target: Path) -> None:
        source = obj.get("location", "")
        target.mkdir(parents=True, exist_ok=True)
        if source.startswith(SCHEME):
            pdh, path = parse(self.keep.current(source))
            for relative, entry in self.keep.manifest(pdh).under(path).items():
                if relative.endswith("/"):
                    (target / relative).mkdir(parents=True, exist_ok=True)
                else:
                    self.keep.copy_to(entry, target / relative)
        elif source.startswith("file://"):
            shutil.copytree(uri_file_path(source), target, dirs_exist_ok=True)

    def _unique(self, path: Path) -> Path:
        """Outputs of this run never overwrite each other; what an earlier run left is replaced."""
        candidate, n = path, 1
        while candidate in self.used:
            n += 1
            candidate = path.with_name(f"{path.name}_{n}")
        self.used.add(candidate)
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate)
        elif os.path.lexists(candidate):
            candidate.unlink()
        return candidate
