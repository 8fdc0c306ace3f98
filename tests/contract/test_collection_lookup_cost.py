"""Finding the oldest collection with some content costs the same however many share it.

Completing a container looks its output and log up by content, and so does every
`GET /collections/{pdh}`. Identical content piles up (an empty output, a rerun's unchanged
results: each request gets its own copy), and with an index on the hash alone every copy was
read and sorted on each lookup. Work is counted in SQLite virtual-machine steps, not timed.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cwl_crunch.domain.collections import portable_data_hash
from cwl_crunch.domain.principal import Principal
from cwl_crunch.services.collections import find
from cwl_crunch.store import Store
from cwl_crunch.store.schema import collections
from tests.support.sqlite_steps import counted

ALICE = "zzzzz-tpzed-000000000000001"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
MANIFEST = {"out.txt": {"blob": "0" * 64, "size": 0}}
PDH = portable_data_hash(MANIFEST)


def _copies(store: Store, first: int, count: int) -> None:
    rows = [{"uuid": f"zzzzz-4zz18-{n:015d}", "owner_uuid": ALICE, "name": f"copy {n}", "portable_data_hash": PDH,
             "manifest": MANIFEST, "properties": {}, "created_at": START + timedelta(seconds=n),
             "modified_at": START, "trash_at": None} for n in range(first, first + count)]
    with store.write() as tx:
        tx.conn.execute(collections.insert(), rows)


def test_the_oldest_copy_is_found_without_reading_the_others(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, tmp_path / "crunch.sqlite3")
    store = Store(f"sqlite:///{tmp_path / 'crunch.sqlite3'}")
    alice = Principal(user_uuid=ALICE, token_uuid="zzzzz-gj3su-000000000000001")
    by_content = [lambda tx: tx.collection_by_pdh(PDH), lambda tx: find(tx, alice, PDH)]
    try:
        _copies(store, 0, 5)
        before = [counted(store, lookup) for lookup in by_content]
        _copies(store, 100, 3000)
        after = [counted(store, lookup) for lookup in by_content]
        for (found_before, steps_before), (found_after, steps_after) in zip(before, after):
            assert found_before["uuid"] == found_after["uuid"] == "zzzzz-4zz18-000000000000000"
            assert steps_after <= 2 * steps_before + 10, (steps_before, steps_after)
    finally:
        store.dispose()
