"""On SQLite, a flush's reads of its segments and replays probe the keys, never scan tables."""

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
_TABLE_SCAN = re.compile(r"^SCAN (recording_byte_range|replay|stored)\b")


def test_a_flush_reads_its_segments_and_replays_by_key(tmp_path: Path) -> None:
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

    reads: list[tuple[str, Any]] = []

    @event.listens_for(catalog.engine, "before_cursor_execute")
    def _seen(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            reads.append((statement, parameters))

    for replay in [*replays, "f" * 32]:
        vault.ingest_segment(segment(replay, 1))
    vault.ingest_segment(segment(replays[0], 0))  # stored: ignored whole
    (result,) = vault.flush()
    vault.close()
    assert (result.inserted, result.duplicates) == (4, 1)

    checked = []
    with sqlite3.connect(database) as conn:
        for statement, parameters in reads:
            # The staged rows live in the flush connection's temporary table, out of reach.
            if "incoming_range" in statement:
                continue
            if not re.search(r"\b(recording_byte_range|replay)\b", statement):
                continue
            steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            checked.append(statement)
            assert not [s for s in steps if _TABLE_SCAN.match(s)], (statement, steps)
    # Both reads the flush makes of its own rows were checked: stored segments (before the
    # upload and again in the transaction) and the replays' buckets.
    assert sum("recording_byte_range" in s for s in checked) >= 2
    assert any(re.search(r"\breplay\b", s) for s in checked)
