"""The partitioned PostgreSQL catalog as it grows to 50 million range rows.

Run:  python benchmarks/catalog_scale.py [--rows 50000000] [--pg URL] [--json]

Synthetic rows with a realistic shape are inserted through the production path
(`Catalog.insert_blob`: replay buckets, tombstone check, COPY, blob row) in flushes of 5,000
rows, as 90 days of ingest: projects drawn from a Zipf law (a few large, many small), replays of
lognormal length (median about 12 segments, capped at 720), 1.024 rows per segment (typed
parts), 80% of replays kept 30 days and 20% kept 90. At each checkpoint (1M, 10M, 50M rows by
default) it measures:

- COPY insert rows/s over the flushes since the previous checkpoint;
- replay lookup latency (all of one replay's rows), p50 and p99, warm (repeated) and cold (the
  first look at replays not read before, after PostgreSQL's buffers are emptied by a restart
  (only of a server of the benchmark's own: run it under benchmarks/own_postgres.py; the
  machine's shared server is never restarted) and, when permitted, the kernel's page cache is
  dropped);
- project shred rows/s (a whole project of about 50,000 rows, deleted in 5,000-row chunks);
- replay shreds one after another, median ms (benchmarks/replay_shreds.py, 20 replays), and
  flushes of replays already recorded, as in steady traffic, rows/s
  (benchmarks/steady_flushes.py, up to 10 flushes of 500 replays of the fullest bucket, fewer
  on small catalogs);
- disk bytes per row (every partition's table and indexes, plus the replay table);
- the time to drop one expired partition (detach and drop) and the rows it held.

Before measuring, each checkpoint runs `VACUUM (ANALYZE)` on the range and replay tables, as
autovacuum does in a deployment (and reports the time and whether the server's autovacuum is
on); `--no-vacuum` measures the rows as COPY left them, unhinted, with no visibility map.

With `--keep` the schema stays; `--schema NAME --shreds 8` then shreds 8 more of its projects of
about 50,000 rows, alternately with the catalog's JIT setting (off) and PostgreSQL's default (on),
and prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import own_postgres
import psycopg2
from sqlalchemy import delete, func, select, text

from vault_store import Scope
from vault_store.catalog import Catalog
from vault_store.catalog.models import RecordingByteRange, Replay
from vault_store.catalog.partitions import partitions
from vault_store.catalog.records import BlobRecord, RangeRecord
from vault_store.services.shredder import Shredder

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FLUSH_ROWS = 5000
DAYS = 90
START = datetime(2026, 8, 1, tzinfo=UTC)


@dataclass
class ReplayPlan:
    project_id: int
    replay_id: str
    segments: int
    retention: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--checkpoints", default="1000000,10000000,50000000")
    parser.add_argument(
        "--pg",
        default=os.environ.get(own_postgres.URL_ENV, PG_URL),
        help="the server (default: the one benchmarks/own_postgres.py started, else the machine's)",
    )
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="measure 'cold' without restarting even a server of our own (own_postgres.py); "
        "the machine's shared server is never restarted",
    )
    parser.add_argument(
        "--schema",
        help="measure project shreds on a schema an earlier run kept (--keep), inserting nothing",
    )
    parser.add_argument(
        "--shreds",
        type=int,
        default=8,
        help="with --schema: projects shredded, alternately with JIT off (the catalog's "
        "setting) and on (PostgreSQL's default)",
    )
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="measure each checkpoint without first vacuuming the tables (the default vacuums, "
        "as autovacuum would have: a server with autovacuum off leaves every row unhinted)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.schema:
        compared = jit_comparison(args.pg, args.schema, args.shreds)
        print(json.dumps(compared, indent=2 if args.json else None))
        return
    checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if int(c) <= args.rows)

    schema = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg2.connect(args.pg) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    url = schema_url(args.pg, schema)
    catalog = Catalog(url)
    catalog.migrate()
    generator = random.Random(42)
    results: list[dict[str, Any]] = []
    inserted = 0
    window_rows, window_seconds = 0, 0.0
    read_before: set[tuple[int, str]] = set()
    try:
        for rows, created_at, retention in flushes(generator, args.rows):
            blob = BlobRecord(
                path=f"r{retention}d/{uuid.uuid4().hex}.vsb",
                size=rows[-1].stop,
                frame_count=len(rows),
                retention_days=retention,
                created_at=created_at,
                expires_at=created_at + timedelta(days=retention),
            )
            started = time.perf_counter()
            catalog.insert_blob(blob, rows)
            window_seconds += time.perf_counter() - started
            window_rows += len(rows)
            inserted += len(rows)
            if checkpoints and inserted >= checkpoints[0]:
                checkpoints.pop(0)
                point = {} if args.no_vacuum else vacuum(args.pg, schema)
                point.update(
                    measure(
                        catalog,
                        args.lookups,
                        read_before,
                        restart=not args.no_restart,
                        checkpoint=len(results),
                    )
                )
                point.update(rows=inserted, copy_rows_per_s=round(window_rows / window_seconds))
                results.append(point)
                window_rows, window_seconds = 0, 0.0
                if not args.json:
                    print(json.dumps(point), flush=True)
            if not checkpoints:
                break
    finally:
        catalog.dispose()
        if args.keep:
            print(f"kept schema {schema} (--schema {schema})", file=sys.stderr)
        else:
            conn = psycopg2.connect(args.pg)
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.close()
    if args.json:
        print(json.dumps(results, indent=2))


def schema_url(pg: str, schema: str) -> str:
    """The catalog URL of one schema of the server at `pg` (its search_path): a catalog this
    benchmark builds, or one an earlier run kept."""
    return f"{pg}?options=-csearch_path%3D{schema}"


def replays(generator: random.Random, rows: int) -> list[ReplayPlan]:
    """Enough replays for `rows` rows, each with its project, length and retention."""
    plans: list[ReplayPlan] = []
    total = 0
    while total < rows:
        # Zipf over 2,000 projects: project 1 is the largest.
        project = min(2000, int(generator.paretovariate(1.1)))
        segments = min(720, max(1, int(generator.lognormvariate(2.5, 1.2))))
        retention = 30 if generator.random() < 0.8 else 90
        plans.append(
            ReplayPlan(project, uuid.UUID(int=generator.getrandbits(128)).hex, segments, retention)
        )
        total += segments  # parts add ~2.4% more rows: the last checkpoint is always reached
    return plans


def flushes(generator: random.Random, rows: int) -> Any:
    """Flushes of 5,000 rows per retention class, in time order over 90 days."""
    plans = replays(generator, rows)
    per_day = math.ceil(len(plans) / DAYS)
    buffers: dict[int, list[RangeRecord]] = {30: [], 90: []}
    offsets = {30: 0, 90: 0}
    for index, plan in enumerate(plans):
        created_at = START + timedelta(days=index // per_day, seconds=index % per_day)
        for segment in range(plan.segments):
            parts = ["dom", "console"] if generator.random() < 0.024 else ["dom"]
            for part in parts:
                size = int(generator.lognormvariate(8.5, 1.0))
                start = offsets[plan.retention]
                offsets[plan.retention] += size
                buffers[plan.retention].append(
                    RangeRecord(
                        project_id=plan.project_id,
                        replay_id=plan.replay_id,
                        segment_id=segment,
                        part=part,
                        blob_path="",
                        start=start,
                        stop=start + size,
                        wrapped_dek=b"w" * 60,
                        kek="projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
                        key_check=b"c" * 32,
                        created_at=created_at,
                        expires_at=created_at + timedelta(days=plan.retention),
                    )
                )
                if len(buffers[plan.retention]) >= FLUSH_ROWS:
                    yield buffers[plan.retention], created_at, plan.retention
                    buffers[plan.retention] = []
                    offsets[plan.retention] = 0
    for retention, rest in buffers.items():
        if rest:
            yield rest, rest[-1].created_at, retention


def vacuum(pg: str, schema: str) -> dict[str, Any]:
    """VACUUM (ANALYZE) the range and replay tables, as autovacuum does in a deployment.

    Rows COPYed minutes ago have no hint bits and no visibility map: the first statement to
    read each page (a lookup, a shred's count) sets the hints and dirties the page, and a
    backend with 128 MB of shared buffers then writes those pages out itself. Autovacuum does
    that work in the background soon after the rows arrive; on a server where it is off
    (`autovacuum` is reported), only this does."""
    conn = psycopg2.connect(pg, options=f"-csearch_path={schema}")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            (autovacuum,) = cursor.fetchone() or ("unknown",)
            started = time.perf_counter()
            cursor.execute("VACUUM (ANALYZE) recording_byte_range, replay")
            seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"server_autovacuum": autovacuum, "vacuum_seconds": round(seconds, 1)}


def measure(
    catalog: Catalog,
    lookups: int,
    read_before: set[tuple[int, str]],
    *,
    restart: bool,
    checkpoint: int,
) -> dict[str, Any]:
    """Everything measured at one checkpoint (the `checkpoint`th, from 0)."""
    with catalog.connection("bench") as conn:
        known = conn.execute(
            select(Replay.project_id, Replay.replay_id).order_by(func.random()).limit(lookups * 3)
        ).all()
    fresh = [(int(p), str(r)) for p, r in known if (p, r) not in read_before]
    cold_set, warm_set = fresh[:lookups], fresh[lookups : 2 * lookups]
    read_before.update(cold_set)
    cold_kind = empty_caches(catalog) if restart else "first read, caches not emptied"
    cold = timed_lookups(catalog, cold_set)
    timed_lookups(catalog, warm_set)  # warm them
    warm = timed_lookups(catalog, warm_set)
    point: dict[str, Any] = {
        "lookup_cold_p50_ms": pct(cold, 50),
        "lookup_cold_p99_ms": pct(cold, 99),
        "cold_means": cold_kind,
        "lookup_warm_p50_ms": pct(warm, 50),
        "lookup_warm_p99_ms": pct(warm, 99),
    }
    point.update(shred_project(catalog))
    point.update(steady_traffic(catalog, checkpoint=checkpoint))
    point.update(disk(catalog))
    point.update(drop_oldest(catalog))
    return point


def steady_traffic(catalog: Catalog, *, checkpoint: int) -> dict[str, Any]:
    """Replay shreds one after another (ms each), and flushes of replays already recorded
    (rows/s), as a worker meets them in steady traffic: benchmarks/replay_shreds.py and
    steady_flushes.py. The flushes' rows stay (up to 55,000 of them, new segment ids at each
    checkpoint); the shredded replays are gone."""
    # Imported here: replay_shreds imports this module (through shred_statements).
    import replay_shreds
    import steady_flushes

    shreds = replay_shreds.measure(catalog, offset=0, count=20, warm_up=5, statements=False)
    point: dict[str, Any] = {"replay_shred_median_ms": shreds["median_ms"]}
    # Up to 10 flushes of 500 replays, after a first one, from the fullest bucket (a bucket
    # holds about 1,300 replays at 3M rows: one flush then).
    timed = min(10, steady_flushes.fullest_bucket(catalog) // steady_flushes.REPLAYS_PER_FLUSH - 1)
    if timed > 0:
        flushes = steady_flushes.measure(
            catalog, offset=0, flushes=timed, first_segment=5000 + 10 * checkpoint
        )
        point["steady_flush_rows_per_s"] = flushes["rows_per_second"]
        point["steady_flushes"] = timed
    return point


def timed_lookups(catalog: Catalog, replay_ids: list[tuple[int, str]]) -> list[float]:
    times = []
    for project, replay in replay_ids:
        started = time.perf_counter()
        rows = catalog.replay_ranges(project, replay, limit=1000)
        times.append((time.perf_counter() - started) * 1000)
        assert rows, "a replay from the replay table has rows"
    return times


def empty_caches(catalog: Catalog, *, page_cache: bool = True) -> str:
    """Restart PostgreSQL (empties shared buffers) if it is this benchmark's own server
    (benchmarks/own_postgres.py), and with `page_cache` drop the kernel's page cache where
    permitted. The machine's own server is never restarted: other work shares it."""
    catalog.dispose()
    # Back once the server accepts connections again (pg_ctl start -w waits for that).
    restarted = own_postgres.restart_own_server()
    dropped = False
    try:
        if page_cache:
            subprocess.run(["sync"], check=True)
            with open("/proc/sys/vm/drop_caches", "w") as caches:
                caches.write("3\n")
            dropped = True
    except OSError:
        pass  # not permitted here: reported below as not emptied
    steps = (("server restart", restarted), ("page cache dropped", dropped))
    emptied = [step for step, done in steps if done]
    return " + ".join(emptied) or "not emptied (shared server, no permission)"


def shred_project(catalog: Catalog) -> dict[str, Any]:
    """Shred the project whose row count is nearest 50,000."""
    (project,) = projects_nearest(catalog, 50_000, 1)
    rows, elapsed = timed_project_shred(catalog, project, reason="scale")
    return {"shred_rows": rows, "shred_rows_per_s": round(rows / elapsed)}


def jit_comparison(pg: str, schema: str, shreds: int) -> dict[str, Any]:
    """Shred the `shreds` projects nearest 50,000 rows in A B B A order, A with the catalog's
    JIT off, B with it on as PostgreSQL's default has it; rows/s of each and their ratio."""
    url = schema_url(pg, schema)
    catalogs = {"jit_off": Catalog(url), "jit_on": Catalog(f"{url}%20-c%20jit%3Don")}
    ranked = projects_nearest(catalogs["jit_off"], 50_000, shreds)
    totals = {mode: [0, 0.0] for mode in catalogs}
    runs = []
    for index, project in enumerate(ranked):
        mode = "jit_off" if index % 4 in (0, 3) else "jit_on"
        rows, elapsed = timed_project_shred(catalogs[mode], project, reason="jit")
        totals[mode][0] += rows
        totals[mode][1] += elapsed
        runs.append({"mode": mode, "rows": rows, "seconds": round(elapsed, 3)})
    for catalog in catalogs.values():
        catalog.dispose()
    rates = {mode: round(rows / seconds) for mode, (rows, seconds) in totals.items() if seconds}
    return {
        "shreds": runs,
        **{f"{mode}_rows_per_s": rate for mode, rate in rates.items()},
        "jit_off_over_on": round(rates["jit_off"] / rates["jit_on"], 2)
        if len(rates) == 2
        else None,
    }


def projects_nearest(catalog: Catalog, rows: int, count: int) -> list[int]:
    """The `count` projects whose row count is nearest `rows`, nearest first (estimated as
    replays per project times the mean rows per replay: counting rows would read them all)."""
    with catalog.connection("bench") as conn:
        sizes = conn.execute(
            select(Replay.project_id, func.count()).group_by(Replay.project_id)
        ).all()
    mean_rows = 1.024 * 25
    ranked = sorted(sizes, key=lambda size: abs(size[1] * mean_rows - rows))
    return [int(project) for project, _replays in ranked[:count]]


def timed_project_shred(catalog: Catalog, project: int, *, reason: str) -> tuple[int, float]:
    """Request and run a whole project's shred in 5,000-row chunks: rows deleted, seconds."""
    shredder = Shredder(catalog, chunk_rows=5000)
    started = time.perf_counter()
    deletion = shredder.request(Scope.PROJECT, project, requested_by="bench", reason=reason)
    status = shredder.run(deletion)
    return status.rows_deleted, time.perf_counter() - started


def disk(catalog: Catalog) -> dict[str, Any]:
    with catalog.connection("bench") as conn:
        found = partitions(conn)
        rows = conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one()
        replay_bytes = conn.execute(text("SELECT pg_total_relation_size('replay')")).scalar_one()
    table = sum(p.total_bytes for p in found)
    return {
        "partitions": len(found),
        "table_and_index_bytes": table,
        "replay_table_bytes": int(replay_bytes),
        "bytes_per_row": round((table + int(replay_bytes)) / max(rows, 1), 1),
        "exact_rows": int(rows),
    }


def drop_oldest(catalog: Catalog) -> dict[str, Any]:
    from vault_store.catalog.partitions import drop, exact_rows

    with catalog.connection("bench") as conn:
        oldest = partitions(conn)[0]
    with catalog.transaction("bench") as conn:
        rows = exact_rows(conn, oldest)
    started = time.perf_counter()
    with catalog.transaction("bench") as conn:
        drop(conn, oldest)
    elapsed = time.perf_counter() - started
    with catalog.transaction("bench") as conn:  # its replays go with it, as in maintenance
        conn.execute(
            delete(Replay).where(
                Replay.expiry_bucket >= oldest.first, Replay.expiry_bucket < oldest.end
            )
        )
    catalog.forget_partitions()
    return {"drop_partition_rows": rows, "drop_partition_ms": round(elapsed * 1000, 1)}


def pct(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    if percentile == 50:
        return round(statistics.median(ordered), 2)
    return round(ordered[max(0, math.ceil(len(ordered) * percentile / 100) - 1)], 2)


if __name__ == "__main__":
    main()
