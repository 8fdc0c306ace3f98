"""Where a step's files appear in its container: one staging collection per job.

Every File and Directory a job references — in another collection, a local file, a literal —
is laid out as cwltool would stage it (`<n>/<basename>`, secondary files beside their primary)
in a new collection built from manifest entries, so no data is copied. That collection is
mounted at `/keep/<pdh>`; its hash depends only on the content, so identical jobs make identical
requests and are reused.
"""

from __future__ import annotations

import posixpath
from collections.abc import MutableSequence
from typing import Any

from cwltool.errors import WorkflowException
from cwltool.pathmapper import MapperEnt, PathMapper
from cwltool.utils import downloadHttpFile
from schema_salad.ref_resolver import uri_file_path

from ..domain.collections import portable_data_hash
from .keepfs import SCHEME, Keep, location, parse

KEEP_ROOT = "/keep"


class CollectionPathMapper(PathMapper):
    def __init__(self, referenced_files: MutableSequence[Any], basedir: str, stagedir: str,
                 separate_dirs: bool = True, *, keep: Keep) -> None:
        self.keep = keep
        self.manifest: dict[str, Any] = {}
        self.pdh: str | None = None
        # location → (path in the collection, mapper type, absolute target if not under stagedir)
        self._placed: dict[str, tuple[str, str, str | None]] = {}
        super().__init__(referenced_files, basedir, stagedir, separate_dirs)

    def setup(self, referenced_files: MutableSequence[Any], basedir: str) -> None:
        for index, item in enumerate(referenced_files):
            directory = str(index) if self.separateDirs else ""
            self._place(item, directory, basedir, bool(item.get("writable", False)))
        if not self.manifest:
            return
        self.pdh = portable_data_hash(self.manifest)
        root = posixpath.join(self.stagedir, self.pdh) if self.separateDirs else self.stagedir
        for source, (relative, kind, target) in self._placed.items():
            self._pathmap[source] = MapperEnt(location(self.pdh, relative), target or posixpath.join(root, relative),
                                              kind, True)

    def stage(self, name: str) -> tuple[str, dict[str, Any] | None] | None:
        """The staging collection, for a request to mount (`Keep.stage`); None when the job has
        no files."""
        return self.keep.stage(self.manifest, name) if self.manifest else None

    def top_level(self) -> list[tuple[str, str]]:
        """(relative path, target) of each entry not inside another one."""
        return [(parse(entry.resolved)[1], entry.target) for _, entry in self.items_exclude_children()]

    # -- layout ---------------------------------------------------------------------------

    def _place(self, item: dict[str, Any], directory: str, basedir: str, copy: bool) -> None:
        source = item["location"]
        if source in self._pathmap or source in self._placed:
            return
        dirname = str(item.get("dirname") or "")
        directory = self._dirname(dirname) if dirname else directory
        relative = posixpath.join(directory, item["basename"])
        # An absolute place outside the stage directory (an InitialWorkDir entry named by an
        # absolute path, in a container) is the target itself; the collection keeps it relative.
        target = posixpath.join(dirname, item["basename"]) if dirname.startswith("/") and not self._staged(dirname) \
            else None
        copy = bool(item.get("writable", copy))
        if item.get("class") == "Directory":
            self._place_directory(item, relative, basedir)
            self._placed[source] = (relative, "WritableDirectory" if copy else "Directory", target)
            for child in item.get("listing") or []:
                self._place(child, relative, basedir, copy)
            return
        if source.startswith("_:"):
            if "contents" not in item:
                raise WorkflowException(f"File {item.get('basename')!r} has neither a location nor contents")
            self.manifest[relative] = self.keep.store_bytes(str(item["contents"]).encode())
            self._placed[source] = (relative, "CreateWritableFile" if copy else "CreateFile", target)
        else:
            self.manifest[relative] = self._file_entry(source, basedir)
            self._placed[source] = (relative, "WritableFile" if copy else "File", target)
        for secondary in item.get("secondaryFiles") or []:
            self._place(secondary, directory, basedir, copy)

    def _staged(self, dirname: str) -> bool:
        return dirname == self.stagedir or dirname.startswith(self.stagedir.rstrip("/") + "/")

    def _dirname(self, dirname: str) -> str:
        """Where an item with this `dirname` goes in the collection."""
        if self._staged(dirname):
            return dirname[len(self.stagedir):].strip("/")
        return dirname.strip("/")

    def _place_directory(self, item: dict[str, Any], relative: str, basedir: str) -> None:
        source = item["location"]
        if source.startswith("_:"):
            entries: dict[str, Any] = {}
        elif source.startswith(SCHEME):
            pdh, path = parse(self.keep.current(source))
            manifest = self.keep.manifest(pdh)
            if path not in manifest.dirs:
                raise WorkflowException(f"Directory {source} not found")
            entries = manifest.under(path)
        else:
            entries = self.keep.store_tree(_local_path(source, basedir))
        for path, entry in entries.items():
            self.manifest[posixpath.join(relative, path)] = entry
        if not entries:
            self.manifest[relative + "/"] = {}

    def _file_entry(self, source: str, basedir: str) -> dict[str, Any]:
        if source.startswith(SCHEME):
            pdh, path = parse(self.keep.current(source))
            entry = self.keep.manifest(pdh).files.get(path)
            if entry is None:
                raise WorkflowException(f"File {source} not found")
            return dict(entry)
        if source.startswith(("http://", "https://")):
            downloaded, _ = downloadHttpFile(source)
            return self.keep.store_file(downloaded)
        try:
            return self.keep.store_file(_local_path(source, basedir))
        except OSError as error:
            raise WorkflowException(f"Input file {source} cannot be read: {error.strerror}") from error


def _local_path(source: str, basedir: str) -> str:
    if source.startswith("file://"):
        return uri_file_path(source)
    return source if posixpath.isabs(source) else posixpath.join(basedir, source)
