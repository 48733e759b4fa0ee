"""On SQLite, ingest's reads of tombstones, segments and replays probe keys, never scan."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.builders import segment
from vault_store import Catalog, LocalBlobStore, LocalKms, Vault

# A plan step reading a whole table (directly or through one of its indexes), as SQLite's
# EXPLAIN QUERY PLAN words it; a keyed probe reads "SEARCH".
_TABLE_SCAN = re.compile(r"^SCAN (recording_byte_range|replay|tombstone|stored)\b")
_TABLES = re.compile(r"\b(recording_byte_range|replay|tombstone)\b")


def test_ingest_reads_tombstones_segments_and_replays_by_key(tmp_path: Path) -> None:
    database = tmp_path / "catalog.sqlite3"
    catalog = Catalog(f"sqlite:///{database}")
    catalog.migrate()
    vault = Vault(
        catalog=catalog, blob_store=LocalBlobStore(tmp_path / "blobs"), kms=LocalKms(tmp_path / "k")
    )
    replays = [f"{n:032x}" for n in range(1, 4)]
    for replay in replays:  # rows already there, so a scan has something to read
        vault.ingest_segment(segment(replay, 0))
    vault.flush()

    # Every statement as SQLite runs it (parameters inlined), whether it came through
    # SQLAlchemy or straight from a pooled driver connection (the per-key tombstone check).
    ran: list[str] = []

    @event.listens_for(catalog.engine, "checkout")
    def _trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(ran.append)

    for replay in [*replays, "f" * 32]:  # the last one is new: its key is made here
        vault.ingest_segment(segment(replay, 1))
    vault.ingest_segment(segment(replays[0], 0))  # stored: ignored whole
    (result,) = vault.flush()
    vault.close()
    assert (result.inserted, result.duplicates) == (4, 1)

    checked = []
    with sqlite3.connect(database) as conn:
        for statement in ran:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            # The staged rows live in the flush connection's temporary table, out of reach.
            if "incoming_range" in statement or not _TABLES.search(statement):
                continue
            steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
            checked.append(statement)
            assert not [s for s in steps if _TABLE_SCAN.match(s)], (statement, steps)
            # A tombstone is found by (project, replay) or (project, NULL), not by reading
            # every tombstone of the project.
            searches = [s for s in steps if s.startswith("SEARCH tombstone")]
            assert all("replay_id=?" in s for s in searches), (statement, steps)
    # Each kind of read was checked: the new key's tombstone check and the flush's (tombstone),
    # stored segments (before the upload and in the transaction), the replays' buckets.
    assert sum("tombstone" in s for s in checked) >= 2
    assert sum("recording_byte_range" in s for s in checked) >= 2
    assert any(re.search(r"\breplay\b", s) for s in checked)
