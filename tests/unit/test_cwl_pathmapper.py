"""Where a job's files appear in its container (cwl_crunch.cwl.pathmapper): initial work dir
entries under the output directory, or at an absolute place of their own (in a container)."""

from __future__ import annotations

import hashlib

from cwl_crunch.cwl.keepfs import Keep, parse
from cwl_crunch.cwl.pathmapper import CollectionPathMapper


def _keep() -> Keep:
    keep = Keep(api=None)  # type: ignore[arg-type] - literals only: nothing is fetched
    keep.store_bytes = lambda data: {"blob": hashlib.sha256(data).hexdigest(), "size": len(data)}  # type: ignore[method-assign]
    return keep


def _literal(name: str, dirname: str | None = None) -> dict:
    item = {"class": "File", "location": f"_:{name}", "basename": name, "contents": name}
    if dirname is not None:
        item["dirname"] = dirname
    return item


def test_entries_go_under_the_output_directory_or_at_their_absolute_place() -> None:
    listing = [_literal("plain.txt"), _literal("nested.txt", "/var/spool/cwl/sub"), _literal("abs.txt", "/input/dir")]
    mapper = CollectionPathMapper(listing, "/", "/var/spool/cwl", separate_dirs=False, keep=_keep())
    targets = {source: entry.target for source, entry in mapper.items()}
    assert targets == {"_:plain.txt": "/var/spool/cwl/plain.txt", "_:nested.txt": "/var/spool/cwl/sub/nested.txt",
                       "_:abs.txt": "/input/dir/abs.txt"}
    # In the collection every entry has a relative path; the container mounts each at its target.
    assert {parse(entry.resolved)[1] for _, entry in mapper.items()} == {"plain.txt", "sub/nested.txt", "input/dir/abs.txt"}
    assert sorted(mapper.top_level()) == [("input/dir/abs.txt", "/input/dir/abs.txt"),
                                          ("plain.txt", "/var/spool/cwl/plain.txt"),
                                          ("sub/nested.txt", "/var/spool/cwl/sub/nested.txt")]
