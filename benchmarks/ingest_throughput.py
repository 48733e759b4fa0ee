"""Ingest throughput of the library against the raw zstd+AES-GCM limit, and catalog rows/s.

Run:  python benchmarks/ingest_throughput.py [--rounds N] [--scale N] [--pg URL] [--json]

Every variant runs in the same process on the same segments, rounds interleaved (raw, SQLite,
PostgreSQL, raw, ...) so machine noise hits all of them alike; the median round is reported and
ratios are taken between medians of the same run. One process: the library path is single-core
(PostgreSQL itself runs as a separate server process, as in production).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psycopg2
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault_store import Catalog, LocalBlobStore, LocalKms, Vault
from vault_store.core.message import Segment
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import recordings_or_synthetic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import synthetic_flushes

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def load_segments(scale: int) -> list[Segment]:
    """The real recordings split like the SDK, repeated `scale` times under new replay ids."""
    recordings, origin = recordings_or_synthetic()
    print(f"recordings: {origin}", file=sys.stderr)
    segments = []
    for copy in range(scale):
        for n, recording in enumerate(recordings):
            replay = uuid.uuid4().hex
            for segment_id, body in enumerate(segment_bodies(recording.events)):
                segments.append(
                    Segment(
                        project_id=1 + (copy + n) % 4,
                        replay_id=replay,
                        segment_id=segment_id,
                        body=body,
                        retention_days=90,
                    )
                )
    return segments


def raw_limit(segments: list[Segment]) -> Callable[[], None]:
    """zstd level 3 then AES-256-GCM with a random nonce: the floor of what sealing costs."""
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
    aead = AESGCM(os.urandom(32))

    def run() -> None:
        for segment in segments:
            aead.encrypt(os.urandom(12), compressor.compress(segment.body), b"ad")

    return run


class LibraryRun:
    """The whole library path: seal, pack, write blobs to a local directory, insert rows.

    Like a long-lived ingest worker: one vault (catalog connection, key file) for all rounds,
    built before timing. Each round sends the same segments under fresh replay ids (renamed
    outside the timing), so every round makes and wraps new keys and inserts new rows.
    """

    def __init__(self, segments: list[Segment], catalog_url: str, work: Path) -> None:
        self.segments = segments
        catalog = Catalog(catalog_url)
        catalog.migrate()
        self.vault = Vault(
            catalog=catalog,
            blob_store=LocalBlobStore(work / uuid.uuid4().hex),
            kms=LocalKms(work / "kek.json"),
            # The storage core: one frame per segment (typed parts: see parts_report.py).
            typed_parts=False,
        )
        self.round: list[Segment] = []

    def setup(self) -> None:
        renamed = {replay: uuid.uuid4().hex for replay in {s.replay_id for s in self.segments}}
        self.round = [replace(s, replay_id=renamed[s.replay_id]) for s in self.segments]

    def __call__(self) -> None:
        for segment in self.round:
            self.vault.ingest_segment(segment)
        self.vault.flush()

    def close(self) -> None:
        self.vault.close()


def catalog_rows_per_second(catalog_url: str, rows: int, batch: int, writers: int) -> float:
    """`writers` threads (one connection each, like ingest workers) insert `rows` range rows in
    flush-sized batches into one catalog; aggregate rows per second."""
    catalog = Catalog(catalog_url)
    catalog.migrate()
    flushes = synthetic_flushes(rows, batch=batch)
    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda item: catalog.insert_blob(*item), flushes))
    elapsed = time.perf_counter() - started
    catalog.dispose()
    return len(flushes) * batch / elapsed


def fresh_pg_schema(base: str) -> str:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(base) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


def drop_pg_schema(base: str, url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    conn = psycopg2.connect(base)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--scale", type=int, default=8, help="copies of each recording")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    parser.add_argument("--catalog-rows", type=int, default=200_000)
    parser.add_argument("--cores", type=int, default=1, help="CPUs this process may use")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # Single core means single core: the sealing thread and the background flusher share one.
    all_cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(all_cores)[: args.cores])

    segments = load_segments(args.scale)
    total_bytes = sum(len(s.body) for s in segments)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        pg_urls: list[str] = []

        def new_pg() -> str:
            pg_urls.append(fresh_pg_schema(args.pg))
            return pg_urls[-1]

        variants: dict[str, Callable[[], None]] = {"raw zstd+AES-GCM": raw_limit(segments)}
        variants["library, SQLite"] = LibraryRun(segments, f"sqlite:///{work}/bench.sqlite3", work)
        if args.pg:
            variants["library, PostgreSQL"] = LibraryRun(segments, new_pg(), work)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                if isinstance(run, LibraryRun):
                    run.setup()
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        for run in variants.values():
            if isinstance(run, LibraryRun):
                run.close()
        os.sched_setaffinity(0, all_cores)
        catalog_rates = {
            "SQLite, 1 writer": catalog_rows_per_second(
                f"sqlite:///{work}/rows.sqlite3", args.catalog_rows, 5000, writers=1
            )
        }
        if args.pg:
            for writers in (1, 2):
                catalog_rates[f"PostgreSQL, {writers} writer(s)"] = catalog_rows_per_second(
                    new_pg(), args.catalog_rows, 5000, writers=writers
                )
        for url in pg_urls:
            drop_pg_schema(args.pg, url)

    raw = statistics.median(times["raw zstd+AES-GCM"])
    results = {
        "cores": args.cores,
        "segments": len(segments),
        "megabytes": round(total_bytes / 1e6, 1),
        "rounds": args.rounds,
        "variants": {
            name: {
                "median_seconds": round(statistics.median(samples), 4),
                "segments_per_second": round(len(segments) / statistics.median(samples)),
                "megabytes_per_second": round(total_bytes / 1e6 / statistics.median(samples), 1),
                "ratio_to_raw": round(raw / statistics.median(samples), 3),
            }
            for name, samples in times.items()
        },
        "catalog_rows_per_second": {name: round(rate) for name, rate in catalog_rates.items()},
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{results['segments']} segments, {results['megabytes']} MB of rrweb JSON, "
        f"median of {args.rounds} interleaved rounds, {args.cores} core(s)"
    )
    print(f"{'variant':<24}{'seconds':>10}{'seg/s':>10}{'MB/s':>9}{'x raw':>8}")
    for name, row in results["variants"].items():
        print(
            f"{name:<24}{row['median_seconds']:>10}{row['segments_per_second']:>10}"
            f"{row['megabytes_per_second']:>9}{row['ratio_to_raw']:>8}"
        )
    for name, rate in catalog_rates.items():
        print(f"catalog insert rows/s ({name}, 5000-row flushes): {rate:,.0f}")
    print("(catalog rows are timed without the core pinning: the writers are separate workers)")


if __name__ == "__main__":
    main()
