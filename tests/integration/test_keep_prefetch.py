"""crunch-run's Keep asks for an input collection's manifest ahead of staging (`prefetch`), reads
the answer when it materialises it, and falls back to asking again when the early answer failed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cwl_crunch.client import ApiError, Client
from cwl_crunch.runner.keep import Keep
from tests.support.flows import ok


class Counting(Client):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, str]] = []

    def request_raw(self, method, path, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.sent.append((method, path))
        return super().request_raw(method, path, *args, **kwargs)

    def begin(self, method, path, body=None):  # type: ignore[no-untyped-def, override]
        self.sent.append((method, path))
        return super().begin(method, path, body)


def _collection(blob_service, content: bytes) -> str:  # type: ignore[no-untyped-def]
    admin = blob_service.admin()
    sha = hashlib.sha256(content).hexdigest()
    ok(admin.put(f"/blobs/{sha}", content=content))
    return ok(admin.post("/collections", json={"manifest": {"d/f.txt": {"blob": sha, "size": len(content)}}}))[
        "portable_data_hash"]


def test_a_prefetched_manifest_is_read_when_the_collection_is_materialised(blob_service, tmp_path: Path) -> None:
    pdh = _collection(blob_service, b"early\n")
    api = Counting(blob_service.url, blob_service.admin_token)
    keep = Keep(api, tmp_path / "blobs", tmp_path / "cache")
    keep.prefetch(pdh)
    assert api.sent == [("GET", f"/collections/{pdh}")]
    assert (keep.materialise(pdh) / "d" / "f.txt").read_text() == "early\n"
    assert api.sent == [("GET", f"/collections/{pdh}")]  # the early answer, not a second request
    keep.prefetch(pdh)  # materialised now: nothing to ask
    assert len(api.sent) == 1


def test_an_unread_or_failed_prefetch_leaves_the_connection_usable_and_is_asked_again(blob_service, tmp_path: Path) -> None:
    pdh = _collection(blob_service, b"late\n")
    missing = "0" * 64 + "+5"
    api = Counting(blob_service.url, blob_service.admin_token)
    keep = Keep(api, tmp_path / "blobs", tmp_path / "cache")

    keep.prefetch(missing)
    keep.settle()  # a 404: forgotten
    assert api.get("collections", pdh)["portable_data_hash"] == pdh  # the thread's connection is free
    with pytest.raises(ApiError) as refused:
        keep.materialise(missing)
    assert refused.value.status == 404
    assert api.sent.count(("GET", f"/collections/{missing}")) == 2

    keep.prefetch(pdh)  # another collection is materialised first: the answer is read, and kept
    other = _collection(blob_service, b"other\n")
    assert (keep.materialise(other) / "d" / "f.txt").read_text() == "other\n"
    assert (keep.materialise(pdh) / "d" / "f.txt").read_text() == "late\n"
    assert api.sent.count(("GET", f"/collections/{pdh}")) == 2  # the one above, and the prefetch
