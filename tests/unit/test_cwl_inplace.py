"""In-place updates over immutable collections (InplaceUpdateRequirement): once a step changed a
file or directory in place, every later reader of its old location reads the changed content
from that step's output collection (cwl_crunch.cwl.keepfs.Keep.current)."""

from __future__ import annotations

from cwl_crunch.cwl.keepfs import CollectionFsAccess, Keep, Manifest

OLD = "a" * 64 + "+1"
NEW = "b" * 64 + "+2"
NEWER = "c" * 64 + "+3"


def keep_with(manifests: dict[str, dict]) -> Keep:
    keep = Keep(api=None)  # type: ignore[arg-type] - manifests are given, nothing is fetched
    keep._manifests.update({pdh: Manifest(files) for pdh, files in manifests.items()})
    return keep


def test_a_file_updated_in_place_is_read_from_where_its_new_content_is() -> None:
    keep = keep_with({})
    keep.updated_in_place(f"keep:{OLD}/0/value.txt", f"keep:{NEW}/value.txt")
    assert keep.current(f"keep:{OLD}/0/value.txt") == f"keep:{NEW}/value.txt"
    assert keep.current(f"keep:{OLD}/0/value.txt.bak") == f"keep:{OLD}/0/value.txt.bak"  # a name prefix is not a parent
    assert keep.current(f"keep:{OLD}/1/value.txt") == f"keep:{OLD}/1/value.txt"


def test_a_directory_updated_in_place_redirects_everything_below_it() -> None:
    keep = keep_with({})
    keep.updated_in_place(f"keep:{OLD}/dir", f"keep:{NEW}/inp")
    assert keep.current(f"keep:{OLD}/dir") == f"keep:{NEW}/inp"
    assert keep.current(f"keep:{OLD}/dir/sub/x") == f"keep:{NEW}/inp/sub/x"


def test_successive_updates_are_followed_to_the_latest_content() -> None:
    keep = keep_with({})
    keep.updated_in_place(f"keep:{OLD}/f", f"keep:{NEW}/f")
    keep.updated_in_place(f"keep:{NEW}/f", f"keep:{NEWER}/g")
    assert keep.current(f"keep:{OLD}/f") == f"keep:{NEWER}/g"
    keep.updated_in_place(f"keep:{NEWER}/g", f"keep:{OLD}/f")  # a cycle cannot hang the lookup
    assert keep.current(f"keep:{OLD}/f").startswith("keep:")


def test_file_access_lists_and_reads_the_updated_content() -> None:
    blob = "d" * 64
    keep = keep_with({OLD: {"dir/": {}}, NEW: {"inp/blurb": {"blob": blob, "size": 0}}})
    fs = CollectionFsAccess("", keep)
    assert fs.listdir(f"keep:{OLD}/dir") == []
    keep.updated_in_place(f"keep:{OLD}/dir", f"keep:{NEW}/inp")
    assert fs.listdir(f"keep:{OLD}/dir") == [f"keep:{NEW}/inp/blurb"]
    assert fs.isfile(f"keep:{OLD}/dir/blurb") and fs.size(f"keep:{OLD}/dir/blurb") == 0
