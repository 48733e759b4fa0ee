"""Flushes of replays already recorded, on a kept catalog: the insert rate of steady traffic.

Run:  python benchmarks/steady_flushes.py --schema NAME [--offset 0] [--flushes 20] [--pg URL]
          [--json]

NAME is a schema `catalog_scale.py --keep` left. In steady traffic most of a flush's replays
were recorded by earlier flushes (a replay's segments arrive over an hour), so every flush asks
which of its segments are stored already, in the partitions those replays live in. The bench's
own insert (`vault-store bench`) measures new replays in a catalog of one partition and never
asks. Each flush here is 5,000 rows: 10 new segments (ids 5000 to 5009) of each of 500 replays
of the schema, taken in a fixed pseudo-random order after `--offset` of them, so runs with
different offsets touch different replays. The rows go in through `Catalog.insert_blob`, the
production path, and stay in the schema. Prints rows/s over the flushes after a first one that
warms the connection. To compare two versions of the code, run this file with `PYTHONPATH` set
to each checkout in turn, alternating, with a new `--offset` each run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from vault_store.catalog import Catalog
from vault_store.catalog.records import BlobRecord, RangeRecord

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REPLAYS_PER_FLUSH = 500
SEGMENTS_PER_REPLAY = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="a schema catalog_scale.py --keep left")
    parser.add_argument("--offset", type=int, default=0, help="replays of the order to skip")
    parser.add_argument("--flushes", type=int, default=20, help="flushes timed (after one more)")
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = Catalog(f"{args.pg}?options=-csearch_path%3D{args.schema}")
    try:
        result = measure(catalog, args.offset, args.flushes)
    finally:
        catalog.dispose()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['rows_per_second']:,} rows/s over {result['flushes']} flushes of "
        f"{REPLAYS_PER_FLUSH} recorded replays ({result['partitions']} partitions)"
    )


def measure(catalog: Catalog, offset: int, flushes: int) -> dict[str, Any]:
    """Insert `flushes` + 1 flushes of recorded replays; the rate of all but the first."""
    with catalog.connection("bench") as conn:
        replays = conn.execute(
            text(
                "SELECT project_id, replay_id, expiry_bucket FROM replay "
                "ORDER BY md5(replay_id || 'steady') OFFSET :offset LIMIT :limit"
            ),
            {"offset": offset, "limit": REPLAYS_PER_FLUSH * (flushes + 1)},
        ).all()
        partitions = conn.execute(
            text(
                "SELECT count(*) FROM pg_inherits "
                "WHERE inhparent = CAST('recording_byte_range' AS regclass)"
            )
        ).scalar_one()
    batches = [
        _flush(replays[index * REPLAYS_PER_FLUSH : (index + 1) * REPLAYS_PER_FLUSH])
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


def _flush(replays: Sequence[Any]) -> tuple[BlobRecord, list[RangeRecord]]:
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
                    5000 + n,
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
