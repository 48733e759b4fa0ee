"""Flushes of replays already recorded, on a kept catalog: the insert rate of steady traffic.

Run:  python benchmarks/steady_flushes.py --schema NAME [--offset 0] [--flushes 20]
          [--first-segment 5000] [--pg URL] [--json]

NAME is a schema `catalog_scale.py --keep` left. In steady traffic most of a flush's replays
were recorded by earlier flushes (a replay's segments arrive over an hour), so every flush asks
which of its segments are stored already, in the partitions those replays live in. The bench's
own insert (`vault-store bench`) measures new replays in a catalog of one partition and never
asks. Each flush here is 5,000 rows: 10 new segments (ids `--first-segment` and the nine
after) of each of 500 replays of the schema's fullest bucket (replays recorded together share
one, as they share a partition), taken in a fixed pseudo-random order after `--offset` of
them. The rows go in through `Catalog.insert_blob`, the production path, and stay in the
schema. Prints rows/s over the flushes after a first one that warms the connection. To compare
two versions of the code, run this file with `PYTHONPATH` set to each checkout in turn,
alternating, each run with a new `--offset` (other replays) or a new `--first-segment` (the
same replays, new segments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from vault_store.catalog import Catalog
from vault_store.catalog.records import BlobRecord, RangeRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_scale import schema_url

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REPLAYS_PER_FLUSH = 500
SEGMENTS_PER_REPLAY = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="a schema catalog_scale.py --keep left")
    parser.add_argument("--offset", type=int, default=0, help="replays of the order to skip")
    parser.add_argument("--flushes", type=int, default=20, help="flushes timed (after one more)")
    parser.add_argument(
        "--first-segment",
        type=int,
        default=5000,
        help="the new segments' first id (runs on the same replays need ids no earlier run used)",
    )
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = Catalog(schema_url(args.pg, args.schema))
    try:
        result = measure(catalog, args.offset, args.flushes, args.first_segment)
    finally:
        catalog.dispose()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['rows_per_second']:,} rows/s over {result['flushes']} flushes of "
        f"{REPLAYS_PER_FLUSH} recorded replays ({result['partitions']} partitions)"
    )


def fullest_bucket(catalog: Catalog) -> int:
    """How many replays the fullest bucket holds (what the flushes here can take from)."""
    with catalog.connection("bench") as conn:
        count = conn.execute(
            text("SELECT count(*) FROM replay GROUP BY expiry_bucket ORDER BY 1 DESC LIMIT 1")
        ).scalar()
    return int(count or 0)


def measure(catalog: Catalog, offset: int, flushes: int, first_segment: int) -> dict[str, Any]:
    """Insert `flushes` + 1 flushes of recorded replays; the rate of all but the first."""
    with catalog.connection("bench") as conn:
        # Replays recorded together share a bucket (the day their first row expires), so the
        # replays of a flush in steady traffic live in one partition: the fullest bucket's.
        replays = conn.execute(
            text(
                "SELECT project_id, replay_id, expiry_bucket FROM replay WHERE expiry_bucket = "
                "(SELECT expiry_bucket FROM replay GROUP BY 1 ORDER BY count(*) DESC LIMIT 1) "
                "ORDER BY md5(replay_id || 'steady') OFFSET :offset LIMIT :limit"
            ),
            {"offset": offset, "limit": REPLAYS_PER_FLUSH * (flushes + 1)},
        ).all()
        if len(replays) < REPLAYS_PER_FLUSH * (flushes + 1):
            raise SystemExit(f"only {len(replays)} replays in the fullest bucket after --offset")
        partitions = conn.execute(
            text(
                "SELECT count(*) FROM pg_inherits "
                "WHERE inhparent = CAST('recording_byte_range' AS regclass)"
            )
        ).scalar_one()
    batches = [
        _flush(replays[index * REPLAYS_PER_FLUSH : (index + 1) * REPLAYS_PER_FLUSH], first_segment)
        for index in range(flushes + 1)
    ]
    catalog.insert_blob(*batches[0])
    started = time.perf_counter()
    for blob, rows in batches[1:]:
        outcome = catalog.insert_blob(blob, rows)
        if outcome.inserted != len(rows):
            raise RuntimeError(f"expected {len(rows)} rows inserted, got {outcome}")
    seconds = time.perf_counter() - started
    return {
        "flushes": flushes,
        "partitions": int(partitions),
        "rows_per_second": round(flushes * REPLAYS_PER_FLUSH * SEGMENTS_PER_REPLAY / seconds),
    }


def _flush(replays: Sequence[Any], first_segment: int) -> tuple[BlobRecord, list[RangeRecord]]:
    """One blob of 10 new segments of each replay (their rows keep each replay's bucket)."""
    now = datetime.now(UTC)
    path = f"r30d/steady/{uuid.uuid4().hex}.vsb"
    rows = []
    for index, (project, replay, bucket) in enumerate(replays):
        expires = datetime(bucket.year, bucket.month, bucket.day, 12, tzinfo=UTC)
        wrapped = os.urandom(52)
        for n in range(SEGMENTS_PER_REPLAY):
            start = (index * SEGMENTS_PER_REPLAY + n) * 1000
            rows.append(
                RangeRecord(
                    int(project),
                    str(replay),
                    first_segment + n,
                    "recording",
                    path,
                    start,
                    start + 1000,
                    wrapped,
                    "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
                    b"c" * 32,
                    now,
                    expires,
                )
            )
    size = len(rows) * 1000
    return BlobRecord(path, size, len(rows), 30, now, now + timedelta(days=30)), rows


if __name__ == "__main__":
    main()
