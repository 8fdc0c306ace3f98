"""Output checksums come from the SHA-1 digests crunch-run recorded, without reading the files
(cwl_crunch.cwl.job._checksum); files without a recorded digest are read as cwltool would."""

from __future__ import annotations

import hashlib
import io

from cwl_crunch.cwl.job import _checksum
from cwl_crunch.cwl.keepfs import Keep

PDH = "0" * 64 + "+10"


class CountingFs:
    """Stands in for the collection file access: serves contents and counts the reads."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.opened: list[str] = []

    def open(self, location: str, mode: str) -> io.BytesIO:
        self.opened.append(location)
        return io.BytesIO(self.contents[location])

    def size(self, location: str) -> int:
        return len(self.contents[location])


def test_a_recorded_digest_gives_the_checksum_without_reading_the_file() -> None:
    keep = Keep(api=None)  # type: ignore[arg-type] - no service call is expected
    keep.remember_sha1(PDH, {"out/a.txt": "ab" * 20})
    fs = CountingFs({f"keep:{PDH}/out/a.txt": b"hello"})
    file = {"class": "File", "location": f"keep:{PDH}/out/a.txt"}
    _checksum(keep, fs, file)
    assert file["checksum"] == "sha1$" + "ab" * 20 and file["size"] == 5
    assert fs.opened == []


def test_without_a_recorded_digest_the_file_is_read() -> None:
    keep = Keep(api=None)  # type: ignore[arg-type]
    keep.remember_sha1(PDH, {"other.txt": "cd" * 20})
    location = f"keep:{PDH}/a%20b.txt"
    fs = CountingFs({location: b"hello"})
    file = {"class": "File", "location": location}
    _checksum(keep, fs, file)
    assert file["checksum"] == "sha1$" + hashlib.sha1(b"hello").hexdigest() and file["size"] == 5
    assert fs.opened == [location]


def test_loaded_contents_do_not_stand_in_for_the_whole_file() -> None:
    # loadContents keeps only the first 64 KiB: the checksum is of the file, recorded or read.
    keep = Keep(api=None)  # type: ignore[arg-type]
    keep.remember_sha1(PDH, {"a.txt": "ef" * 20})
    whole = b"x" * 70000
    fs = CountingFs({f"keep:{PDH}/a.txt": whole, f"keep:{PDH}/b.txt": whole})
    recorded = {"class": "File", "location": f"keep:{PDH}/a.txt", "contents": "x" * 65536}
    _checksum(keep, fs, recorded)
    assert recorded["checksum"] == "sha1$" + "ef" * 20 and fs.opened == []
    read = {"class": "File", "location": f"keep:{PDH}/b.txt", "contents": "x" * 65536}
    _checksum(keep, fs, read)
    assert read["checksum"] == "sha1$" + hashlib.sha1(whole).hexdigest() and read["size"] == 70000


def test_literals_and_existing_checksums_are_left_as_cwltool_does_them() -> None:
    keep = Keep(api=None)  # type: ignore[arg-type]
    fs = CountingFs({})
    literal = {"class": "File", "location": "_:b0c8", "basename": "x.txt", "contents": "xyz"}
    _checksum(keep, fs, literal)
    assert literal["checksum"] == "sha1$" + hashlib.sha1(b"xyz").hexdigest() and literal["size"] == 3
    known = {"class": "File", "location": f"keep:{PDH}/a.txt", "checksum": "sha1$given", "size": 1}
    _checksum(keep, fs, known)
    assert known["checksum"] == "sha1$given" and fs.opened == []


def test_digests_that_are_not_sha1_hex_strings_are_ignored() -> None:
    keep = Keep(api=None)  # type: ignore[arg-type]
    keep.remember_sha1(PDH, {"a.txt": 5, "b.txt": "12" * 20, "c.txt": "not hex"})
    keep.remember_sha1("1" * 64 + "+2", "not a mapping")
    assert keep.sha1(f"keep:{PDH}/a.txt") is None
    assert keep.sha1(f"keep:{PDH}/b.txt") == "12" * 20
    assert keep.sha1(f"keep:{PDH}/c.txt") is None
    assert keep.sha1("file:///tmp/b.txt") is None
