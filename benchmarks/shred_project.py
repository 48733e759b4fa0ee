"""A verified project shred of 1M range rows on PostgreSQL (goal: under 60 s).

Run:  python benchmarks/shred_project.py [--rows 1000000] [--days 1] [--pg URL] [--json]

Rows are inserted through the production path (`Catalog.insert_blob`, 5,000-row flushes) into a
fresh schema: the target project, plus a neighbour project of a tenth its size that must keep
every row. The timed part is what `vault-store delete project` does: record the deletion, delete
in 5,000-row chunks, and mark it done only in the transaction that then finds no row left. Also
printed, from the same run: the time per row shredded over the time per row inserted (a ratio,
so the number means something on other machines). `--days N` spreads both projects over N
partitions (N days of ingest), to see whether the rate stays flat as partitions multiply.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2

from vault_store.catalog import BlobRecord, Catalog, RangeRecord
from vault_store.catalog.records import Scope, Status
from vault_store.services.shredder import Shredder

PG_URL = os.environ.get("VAULT_STORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fill(catalog: Catalog, project: int, rows: int, replays: int, *, days: int = 1) -> None:
    """`rows` rows of `replays` replays of `project`, in 5,000-row flushes; with `days`, as
    that many days of ingest, so the rows lie in that many partitions (one per expiry day)."""
    for day in range(days):
        share = rows // days + (1 if day < rows % days else 0)
        if share:
            _fill_day(catalog, project, share, max(replays // days, 1), day)


def _fill_day(catalog: Catalog, project: int, rows: int, replays: int, day: int) -> None:
    now = datetime.now(UTC) + timedelta(days=day)
    ids = [uuid.uuid4().hex for _ in range(replays)]
    for batch in range(0, rows, 5000):
        path = f"r30d/bench/{uuid.uuid4().hex}.vsb"
        ranges = [
            RangeRecord(
                project,
                ids[n % replays],
                n,
                "recording",
                path,
                (n - batch) * 100,
                (n - batch) * 100 + 100,
                os.urandom(52),
                "local-kms:/bench#v1",
                os.urandom(32),
                now,
                now + timedelta(days=30),
            )
            for n in range(batch, min(batch + 5000, rows))
        ]
        catalog.insert_blob(
            BlobRecord(path, len(ranges) * 100, len(ranges), 30, now, now + timedelta(days=30)),
            ranges,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument(
        "--days", type=int, default=1, help="spread both projects over this many partitions"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(args.pg) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    catalog = Catalog(f"{args.pg}?options=-csearch_path%3D{schema}")
    try:
        catalog.migrate()
        started = time.perf_counter()
        fill(catalog, 7, args.rows, max(args.rows // 500, 1), days=args.days)
        fill(catalog, 8, args.rows // 10, max(args.rows // 5000, 1), days=args.days)
        insert_seconds = time.perf_counter() - started
        shredder = Shredder(catalog)
        started = time.perf_counter()
        deletion = shredder.request(Scope.PROJECT, 7, requested_by="bench", reason="bench")
        status = shredder.run(deletion)
        seconds = time.perf_counter() - started
        assert status.status is Status.DONE
        assert status.verified_rows_left == 0
        assert status.rows_deleted == args.rows
        assert catalog.deletions.project_rows(7) == 0
        assert catalog.deletions.project_rows(8) == args.rows // 10
        result = {
            "rows": args.rows,
            "shred_seconds": round(seconds, 2),
            "shred_rows_per_second": round(args.rows / seconds),
            "insert_seconds": round(insert_seconds, 2),
            # Seconds per row shredded over seconds per row inserted, both measured here.
            "shred_to_insert_ratio": round(
                (seconds / args.rows) / (insert_seconds / (args.rows + args.rows // 10)), 3
            ),
            "goal_seconds": 60,
            "partitions": args.days,
            "verified_rows_left": status.verified_rows_left,
        }
    finally:
        catalog.dispose()
        conn = psycopg2.connect(args.pg)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
