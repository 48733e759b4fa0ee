"""`vault-store bench`: ingest, writes, reads, deletes and a cost model, side by side in one run.

Every measurement runs in this process on the same data: the real recordings in
../shared/data/recordings (or synthetic ones), split like the SDK and repeated under new replay
ids. Packed (vault-store) is compared with the naive layout, one object per segment, written by
the same code with a flush size of one segment, to the same kind of store and catalog.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault_store import (
    Catalog,
    FlushPolicy,
    LocalBlobStore,
    LocalKms,
    ReadPolicy,
    Scope,
    Segment,
    Vault,
)
from vault_store.catalog import BlobRecord, RangeRecord, copy_rows
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import recordings_or_synthetic
from vault_store.services.shredder import Shredder

# Prices given in the issue (USD): GCS class A and B operations, storage, KMS operations.
PRICES = {
    "gcs_class_a_per_1000": 0.005,
    "gcs_class_b_per_1000": 0.0004,
    "gcs_storage_per_gb_month": 0.020,
    "kms_per_10000": 0.03,
}
MIB = 1024 * 1024


class Bench:
    """One run: a scratch directory, the segments, and vault factories over it."""

    def __init__(self, *, quick: bool, pg_url: str | None, recordings: Path | None) -> None:
        self.quick = quick
        self.pg_url = pg_url
        found, self.origin = recordings_or_synthetic(recordings)
        self.bodies = [b for r in found for b in segment_bodies(r.events)]
        self._scratch = tempfile.TemporaryDirectory(prefix="vault-bench-")
        self.root = Path(self._scratch.name)

    def close(self) -> None:
        self._scratch.cleanup()

    def vault(
        self,
        *,
        flush: FlushPolicy | None = None,
        read: ReadPolicy | None = None,
        catalog_url: str | None = None,
    ) -> Vault:
        """A fresh catalog (SQLite unless `catalog_url` names one) and blob directory (one key
        file for the whole run)."""
        name = uuid.uuid4().hex
        catalog = Catalog(catalog_url or f"sqlite:///{self.root / f'{name}.sqlite3'}")
        catalog.migrate()
        return Vault(
            catalog=catalog,
            blob_store=LocalBlobStore(self.root / name),
            kms=LocalKms(self.root / "kek.json"),
            flush_policy=flush,
            read_policy=read,
        )

    def segments(self, copies: int, *, segments_per_replay: int | None = None) -> list[Segment]:
        """The bodies, `copies` times, as replays of `segments_per_replay` (default: as split)."""
        result = []
        for _copy in range(copies):
            per = segments_per_replay or len(self.bodies)
            bodies = (self.bodies * (per // len(self.bodies) + 1))[:per]
            replay = uuid.uuid4().hex
            for n, body in enumerate(bodies):
                result.append(
                    Segment(
                        project_id=1, replay_id=replay, segment_id=n, body=body, retention_days=90
                    )
                )
                if segments_per_replay is None and n and n % 40 == 0:
                    replay = uuid.uuid4().hex  # plain runs: replays of about 40 segments
        return result


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def ingest(bench: Bench) -> dict[str, Any]:
    """Segments/s and MB/s on one core: library, raw zstd+AES-GCM, one object per segment."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cores)[:1])
    try:
        return _ingest(bench)
    finally:
        os.sched_setaffinity(0, cores)


def _ingest(bench: Bench) -> dict[str, Any]:
    segments = bench.segments(1 if bench.quick else 3)
    megabytes = sum(len(s.body) for s in segments) / 1e6
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
    aead = AESGCM(os.urandom(32))

    def raw() -> None:
        for segment in segments:
            aead.encrypt(os.urandom(12), compressor.compress(segment.body), b"ad")

    def through(vault: Vault, *, keep_replays: bool = False) -> Callable[[], None]:
        # New replay ids every round, so no segment is a duplicate of an earlier round: one per
        # segment (every segment pays for a new replay key: tombstone check, KMS wrap), or one
        # per replay of the input (keep_replays: about 40 segments share a key, as in traffic).
        # They are made before the clock starts: naming is the harness's work, not ingest's.
        fresh: dict[str, str] = {}
        renamed = [
            replace(
                segment,
                replay_id=fresh.setdefault(segment.replay_id, uuid.uuid4().hex)
                if keep_replays
                else uuid.uuid4().hex[:8] + segment.replay_id[8:],
            )
            for segment in segments
        ]

        def run() -> None:
            for segment in renamed:
                vault.ingest_segment(segment)
            vault.flush()

        return run

    packed, naive = bench.vault(), bench.vault(flush=FlushPolicy(max_segments=1))
    grouped = bench.vault()
    rounds = 1 if bench.quick else 3
    times: dict[str, list[float]] = {
        "raw zstd+AES-GCM": [],
        "library (packed)": [],
        "library (packed), replays of ~40 segments": [],
        "one object per segment": [],
    }
    for _ in range(rounds):  # interleaved, so noise hits all alike
        times["raw zstd+AES-GCM"].append(timed(raw))
        times["library (packed)"].append(timed(through(packed)))
        times["library (packed), replays of ~40 segments"].append(
            timed(through(grouped, keep_replays=True))
        )
        times["one object per segment"].append(timed(through(naive)))
    raw_seconds = statistics.median(times["raw zstd+AES-GCM"])
    rows = {
        name: {
            "segments_per_second": round(len(segments) / statistics.median(t)),
            "megabytes_per_second": round(megabytes / statistics.median(t), 1),
            "ratio_to_raw": round(raw_seconds / statistics.median(t), 3),
        }
        for name, t in times.items()
    }
    stats = packed.stats()
    packed.close()
    naive.close()
    grouped.close()
    return {
        "ratio_goal": INGEST_RATIO_GOAL,
        "cores": 1,
        "segments": len(segments),
        "megabytes": round(megabytes, 2),
        "variants": rows,
        "mean_sealed_bytes_per_segment": round(stats.bytes_stored / max(stats.segments, 1)),
        "replays_per_million_segments": round(
            1e6 * len({s.replay_id for s in segments}) / len(segments)
        ),
    }


def writes(bench: Bench) -> dict[str, Any]:
    """Objects written per million segments, at each flush size.

    The full run repeats the recordings enough (about 64 MB sealed) that even a 32 MiB flush
    fills more than once; smaller runs cannot tell the large flush sizes apart.
    """
    segments = bench.segments(1 if bench.quick else 8)
    sizes_mib = [0.25, 1, 8] if bench.quick else [0.0625, 0.25, 1, 2, 4, 8, 16, 32]
    per_flush = []
    for size in sizes_mib:
        vault = bench.vault(flush=FlushPolicy(max_bytes=int(size * MIB)))

        def ingest_all(vault: Vault = vault) -> None:
            for segment in segments:
                vault.ingest_segment(segment)
            vault.flush()

        seconds = timed(ingest_all)
        blobs = vault.stats().blobs
        per_flush.append(
            {
                "flush_mib": size,
                "objects_per_million_segments": round(1e6 * blobs / len(segments)),
                "segments_per_second": round(len(segments) / seconds),
            }
        )
        vault.close()
    return {"segments": len(segments), "by_flush_size": per_flush, "catalog": catalog_rows(bench)}


# The catalog insert goal on PostgreSQL with one writer (issue 20), rows/s.
PG_INSERT_GOAL = 150_000


def catalog_rows(bench: Bench) -> dict[str, Any]:
    """Catalog insert rows/s on PostgreSQL (and SQLite) in 5000-row flushes; on PostgreSQL
    side by side with a bare COPY of the same rows (interleaved rounds, medians)."""
    rows = 20_000 if bench.quick else 200_000
    result: dict[str, Any] = {
        "sqlite_rows_per_second": round(
            _insert_rows(f"sqlite:///{bench.root / 'rows.sqlite3'}", rows)
        )
    }
    if bench.pg_url:
        insert_rates, bare_rates, binary_rates, bound_rates = [], [], [], []
        for _round in range(1 if bench.quick else 3):
            with _scratch_schema(bench.pg_url) as url:
                insert_rates.append(_insert_rows(url, rows))
            with _scratch_schema(bench.pg_url) as url:
                bare_rates.append(_copy_rows(url, rows, binary=False, flush_statements=False))
            with _scratch_schema(bench.pg_url) as url:
                binary_rates.append(_copy_rows(url, rows, binary=True, flush_statements=False))
            with _scratch_schema(bench.pg_url) as url:
                bound_rates.append(_copy_rows(url, rows, binary=True, flush_statements=True))
        insert, bare = statistics.median(insert_rates), statistics.median(bare_rates)
        binary, bound = statistics.median(binary_rates), statistics.median(bound_rates)
        result["postgresql_rows_per_second"] = round(insert)
        # The yardstick on this machine: the same rows as a text COPY alone (lines
        # rendered beforehand, no check, no lock, no replay or blob row), one transaction per
        # flush. The production path sends binary COPY since stop 28, which can pass it.
        result["postgresql_bare_copy_rows_per_second"] = round(bare)
        result["postgresql_insert_to_bare_copy"] = round(insert / bare, 3)
        result["postgresql_goal_rows_per_second"] = PG_INSERT_GOAL
        # The same bare COPY in the binary form the production path sends.
        result["postgresql_bare_binary_copy_rows_per_second"] = round(binary)
        result["postgresql_insert_to_bare_binary_copy"] = round(insert / binary, 3)
        # The limit for any path that keeps a flush's safety statements: the bare binary COPY
        # plus the locks and admission (tombstones, replay rows) and the blob row, prepared.
        result["postgresql_copy_with_flush_statements_rows_per_second"] = round(bound)
        result["postgresql_insert_to_copy_with_flush_statements"] = round(insert / bound, 3)
    return result


@contextmanager
def _scratch_schema(pg_url: str) -> Iterator[str]:
    """A fresh schema for one measurement; its catalog URL."""
    import psycopg2

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def _copy_rows(url: str, rows: int, *, binary: bool, flush_statements: bool) -> float:
    """Rows/s of COPY alone into the migrated (partitioned) range table in the same flushes, or
    with `flush_statements` of the bare COPY plus the statements a flush keeps around it."""
    with prepared_copies(url, rows, binary=binary, flush_statements=flush_statements) as (
        run,
        _pid,
    ):
        started = time.perf_counter()
        run()
        return rows / (time.perf_counter() - started)


@contextmanager
def prepared_copies(
    url: str, rows: int, *, binary: bool, flush_statements: bool
) -> Iterator[tuple[Callable[[], None], int]]:
    """A function that sends `rows` synthetic rows as COPYs into the migrated (partitioned)
    range table, one transaction per 5,000-row flush, everything rendered beforehand: as text
    lines, or `binary` as the production path encodes them (catalog/copy_rows.py). With
    `flush_statements`, each COPY also has the statements a flush keeps around it: the locks
    and admission (the catalog's own statement: tombstones checked, replay rows recorded)
    before, the blob row after, sent with no Python between. Also the server process's id
    (for its CPU time)."""
    from vault_store.catalog.catalog import _LOCK_AND_ADMIT, _SEGMENT_LOCK_SPACE

    catalog = Catalog(url)
    catalog.migrate()
    flushes = synthetic_flushes(rows)
    catalog.ensure_partition(flushes[0][0].expires_at.date())
    connection = catalog.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone() or (0,)
        connection.commit()
        admission = str(_LOCK_AND_ADMIT.compile(dialect=catalog.engine.dialect))
        if binary:
            columns = ", ".join(copy_rows.COLUMNS)
            statement = f"COPY recording_byte_range ({columns}) FROM STDIN (FORMAT binary)"
        else:
            statement = f"COPY recording_byte_range ({_COPY_COLUMNS}) FROM STDIN"
        steps: list[tuple[bytes | None, io.StringIO | io.BytesIO, bytes | None]] = []
        for blob, ranges in flushes:
            lines: io.StringIO | io.BytesIO
            if binary:
                buckets = {(row.project_id, row.replay_id): row.expires_at.date() for row in ranges}
                lines = io.BytesIO(b"".join(copy_rows.binary_copy(ranges, buckets, "utf_8")))
            else:
                text = "".join(_copy_line(row, row.expires_at.date()) for row in ranges)
                lines = io.StringIO(text)
            if not flush_statements:
                steps.append((None, lines, None))
                continue
            replays = sorted({(row.project_id, row.replay_id) for row in ranges})
            values = {
                "lock_projects": sorted({project for project, _ in replays}),
                "space": _SEGMENT_LOCK_SPACE,
                "keys": [f"{project}:{replay}" for project, replay in replays],
                "projects": [project for project, _ in replays],
                "replays": [replay for _, replay in replays],
                "bucket": ranges[0].expires_at.date(),
                "now": blob.created_at,
            }
            blob_row = cursor.mogrify(
                "INSERT INTO blob (path, size, frame_count, live_bytes, retention_days, "
                "created_at, expires_at, state, compacted) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, 'live', false)",
                (
                    blob.path,
                    blob.size,
                    blob.frame_count,
                    blob.size,
                    blob.retention_days,
                    blob.created_at,
                    blob.expires_at,
                ),
            )
            steps.append((cursor.mogrify(admission, values), lines, blob_row))

        def run() -> None:
            for admit, data, blob_row in steps:
                if admit is not None:
                    cursor.execute(admit)
                    cursor.fetchall()
                cursor.copy_expert(statement, data)
                if blob_row is not None:
                    cursor.execute(blob_row)
                connection.commit()

        yield run, int(pid)
    finally:
        connection.close()
        catalog.dispose()


_COPY_COLUMNS = (
    "project_id, replay_id, segment_id, part, blob_path, start, stop, wrapped_dek, kek, "
    "key_check, created_at, expires_at, expiry_bucket"
)


def _copy_line(row: RangeRecord, bucket: Any) -> str:
    return (
        f"{row.project_id}\t{row.replay_id}\t{row.segment_id}\t{row.part}\t{row.blob_path}"
        f"\t{row.start}\t{row.stop}\t\\\\x{row.wrapped_dek.hex()}\t{row.kek}"
        f"\t\\\\x{row.key_check.hex()}\t{row.created_at.isoformat()}"
        f"\t{row.expires_at.isoformat()}\t{bucket.isoformat()}\n"
    )


def synthetic_flushes(
    rows: int, *, project_id: int = 1, batch: int = 5000, per_replay: int = 10
) -> list[tuple[BlobRecord, list[RangeRecord]]]:
    """Catalog rows shaped like real flushes: `batch` rows per blob, `per_replay` segments per
    replay, one wrapped key per replay."""
    now = datetime.now(UTC)
    expires = now + timedelta(days=90)
    flushes = []
    for _ in range(rows // batch):
        path = f"r90d/{now:%Y-%m-%d}/{now:%H}/{uuid.uuid4().hex}.vsb"
        replays = [(uuid.uuid4().hex, os.urandom(52)) for _ in range(batch // per_replay + 1)]
        ranges = [
            RangeRecord(
                project_id,
                replays[n // per_replay][0],
                n % per_replay,
                "recording",
                path,
                n * 1000,
                n * 1000 + 1000,
                replays[n // per_replay][1],
                "local-kms:/var/lib/vault-store/kek.json#v1",
                b"c" * 32,
                now,
                expires,
            )
            for n in range(batch)
        ]
        flushes.append((BlobRecord(path, batch * 1000, batch, 90, now, expires), ranges))
    return flushes


def _insert_rows(url: str, rows: int) -> float:
    catalog = Catalog(url)
    catalog.migrate()
    flushes = synthetic_flushes(rows)
    seconds = timed(lambda: [catalog.insert_blob(blob, ranges) for blob, ranges in flushes])
    catalog.dispose()
    return rows / seconds


def reads(bench: Bench) -> dict[str, Any]:
    """Latency and requests for replays of 10, 100 and 700 segments, three ways; decode rate."""
    lengths = [10, 100] if bench.quick else [10, 100, 700]
    repeats = 5 if bench.quick else 15
    packed, naive = bench.vault(), bench.vault(flush=FlushPolicy(max_segments=1))
    replays: dict[int, str] = {}
    for length in lengths:
        for segment in bench.segments(1, segments_per_replay=length):
            packed.ingest_segment(segment)
            naive.ingest_segment(segment)
            replays[length] = segment.replay_id
    packed.flush()
    naive.flush()
    ways: dict[str, tuple[Vault, ReadPolicy]] = {
        "coalesced ranges": (packed, ReadPolicy()),
        "one request per range": (packed, ReadPolicy(gap_bytes=0, max_fetch_bytes=1)),
        "one object per segment": (naive, ReadPolicy()),
    }
    table = []
    for length in lengths:
        for way, (source, policy) in ways.items():
            # One reader per way, warmed once (key cache, threads): the steady state of a server.
            reader = bench_reader(source, policy)

            def read_all(reader: Vault = reader, replay: str = replays[length]) -> None:
                b"".join(reader.read_recording(1, replay))

            read_all()
            gets_before = reader.read_counters().gets
            samples = [timed(read_all) for _ in range(repeats)]
            table.append(
                {
                    "segments": length,
                    "way": way,
                    "median_ms": round(statistics.median(samples) * 1000, 2),
                    "requests": round((reader.read_counters().gets - gets_before) / repeats),
                }
            )
            reader._reader.close()
    decode = decode_rate(bench, packed, replays[lengths[-1]])
    packed.close()
    naive.close()
    return {"by_length": table, "decode": decode}


def bench_reader(source: Vault, policy: ReadPolicy) -> Vault:
    """A reader over `source`'s catalog and store with a cold key cache and its own policy."""
    return Vault(
        catalog=source._catalog, blob_store=source._blob_store, kms=source._kms, read_policy=policy
    )


# The goals of the hot-paths issue, printed beside the ratios they bound.
DECODE_RATIO_GOAL = 0.8
INGEST_RATIO_GOAL = 0.8


def stored_replay(bench: Bench, vault: Vault, segments: int) -> str:
    """One replay of `segments` segments of project 1, stored in `vault` and flushed; its id."""
    replay = ""
    for segment in bench.segments(1, segments_per_replay=segments):
        vault.ingest_segment(segment)
        replay = segment.replay_id
    vault.flush()
    return replay


def bare_decoder(bodies: Sequence[bytes]) -> Callable[[], None]:
    """The bare loop a read is measured against: each body sealed beforehand (zstd level 3,
    AES-256-GCM), then, per call, every frame decrypted and decompressed once."""
    aead = AESGCM(os.urandom(32))
    compressor, decompressor = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    frames = [
        (nonce := os.urandom(12), aead.encrypt(nonce, compressor.compress(body), b""))
        for body in bodies
    ]

    def decode() -> None:
        for nonce, ciphertext in frames:
            decompressor.decompress(aead.decrypt(nonce, ciphertext, b""), max_output_size=100 * MIB)

    return decode


def decode_rate(bench: Bench, packed: Vault, replay: str) -> dict[str, Any]:
    """Library read (rows, fetch, unwrap, open, decompress, merge) against raw AES-GCM + zstd
    decoding of the same segment bodies, in interleaved rounds (medians).

    The library's chunks are consumed as a server sends them, never joined into one buffer:
    joining is the caller's copy, not decoding.
    """
    raw = bare_decoder(bench.bodies)
    raw_bytes = sum(len(b) for b in bench.bodies)
    decoded_bytes = sum(len(chunk) for chunk in packed.read_recording(1, replay))  # warm

    def library() -> None:
        for _chunk in packed.read_recording(1, replay):
            pass

    library_times, raw_times = [], []
    for _ in range(3 if bench.quick else 7):
        library_times.append(timed(library))
        raw_times.append(timed(raw))
    library_rate = decoded_bytes / statistics.median(library_times) / 1e6
    raw_rate = raw_bytes / statistics.median(raw_times) / 1e6
    return {
        "library_mb_per_second": round(library_rate, 1),
        "raw_mb_per_second": round(raw_rate, 1),
        "ratio_to_raw": round(library_rate / raw_rate, 3),
        "ratio_goal": DECODE_RATIO_GOAL,
    }


# Shred time of the largest replay against a one-segment one, at most (issue 20).
SHRED_RATIO_LIMIT = 1.5


def deletes(bench: Bench) -> dict[str, Any]:
    """Shred latency against replay size; project shred rows/s; overwrite amplification."""
    vault = bench.vault()
    neighbours = bench.segments(1, segments_per_replay=40)
    shreds, largest = _replay_shreds(bench, vault, neighbours)
    doomed = neighbours[0].replay_id
    status = vault.shred(
        Scope.REPLAY,
        1,
        replay_id=doomed,
        requested_by="bench",
        reason="bench",
        overwrite=True,
        run=False,
    )
    vault._shredder.run(status.id)
    result = vault._overwriter.run(deletion_id=status.id)
    overwrite = {
        "bytes_zeroed": result.bytes_zeroed,
        "bytes_rewritten": result.bytes_rewritten,
        "rewritten_per_byte_deleted": round(
            result.bytes_rewritten / max(result.bytes_zeroed, 1), 1
        ),
    }
    rows = 20_000 if bench.quick else 200_000
    for blob, ranges in synthetic_flushes(rows, project_id=9):
        vault._catalog.insert_blob(blob, ranges)
    shredder = Shredder(vault._catalog)
    deletion = shredder.request(Scope.PROJECT, 9, requested_by="bench", reason="bench")
    project_seconds = timed(lambda: shredder.run(deletion))
    vault.close()
    measured: dict[str, Any] = {
        "shred_by_replay_size": shreds,
        # The largest replay measured (700 segments; 100 with --quick) against one segment.
        "shred_largest_to_1_segment": largest,
        "shred_ratio_limit": SHRED_RATIO_LIMIT,
        "project_shred_rows_per_second": round(rows / project_seconds),
        "forced_overwrite": overwrite,
    }
    if bench.pg_url:
        # The same replay shreds with the catalog on PostgreSQL (the keys above are SQLite's).
        with _scratch_schema(bench.pg_url) as url:
            pg_vault = bench.vault(catalog_url=url)
            try:
                pg_shreds, pg_largest = _replay_shreds(
                    bench, pg_vault, bench.segments(1, segments_per_replay=40)
                )
            finally:
                pg_vault.close()
        measured["postgresql_shred_by_replay_size"] = pg_shreds
        measured["postgresql_shred_largest_to_1_segment"] = pg_largest
    return measured


def _replay_shreds(
    bench: Bench, vault: Vault, neighbours: list[Segment]
) -> tuple[list[dict[str, Any]], float]:
    """Median shred ms of replays of 1 to 700 segments (interleaved rounds, one replay of each
    size per round) stored beside `neighbours`; the largest against one segment."""
    lengths = [1, 10, 100] if bench.quick else [1, 10, 100, 700]
    rounds = 3 if bench.quick else 7
    replays: dict[tuple[int, int], str] = {}
    for length in lengths:
        for round_ in range(rounds):
            for segment in bench.segments(1, segments_per_replay=length):
                vault.ingest_segment(segment)
                replays[(length, round_)] = segment.replay_id
    for segment in neighbours:
        vault.ingest_segment(segment)
    vault.flush()
    warm = bench.segments(1, segments_per_replay=1)[0]
    vault.ingest_segment(warm)
    vault.flush()
    vault.shred(Scope.REPLAY, 1, replay_id=warm.replay_id, requested_by="bench", reason="warm-up")
    seconds: dict[int, list[float]] = {length: [] for length in lengths}
    for round_ in range(rounds):
        for length in lengths:

            def shred(replay: str = replays[(length, round_)]) -> None:
                vault.shred(Scope.REPLAY, 1, replay_id=replay, requested_by="bench", reason="bench")

            seconds[length].append(timed(shred))
    shreds = [
        {"segments": length, "ms": round(statistics.median(seconds[length]) * 1000, 2)}
        for length in lengths
    ]
    largest = statistics.median(seconds[lengths[-1]]) / statistics.median(seconds[1])
    return shreds, round(largest, 2)


def cost(ingested: dict[str, Any], written: dict[str, Any], read: dict[str, Any]) -> dict[str, Any]:
    """Dollars per million segments per month, naive against packed, by flush size.

    Counted per million segments ingested and stored for a month: object writes (class A),
    storage, KMS operations (one wrap per replay per ingest process; one unwrap per replay read),
    and, for reads, one full read of every replay in the month (class B per GET observed above).
    """
    stored_gb = ingested["mean_sealed_bytes_per_segment"] * 1e6 / 1e9
    replays = ingested["replays_per_million_segments"]
    gets = {
        row["way"]: row["requests"] / row["segments"]
        for row in read["by_length"]
        if row["segments"] == 100
    }

    def dollars(objects: float, get_per_segment: float, kms_ops: float) -> dict[str, float]:
        parts = {
            "writes": objects * PRICES["gcs_class_a_per_1000"] / 1000,
            "storage": stored_gb * PRICES["gcs_storage_per_gb_month"],
            "reads": 1e6 * get_per_segment * PRICES["gcs_class_b_per_1000"] / 1000,
            "kms": kms_ops * PRICES["kms_per_10000"] / 10000,
        }
        return {
            **{k: round(v, 4) for k, v in parts.items()},
            "total": round(sum(parts.values()), 4),
        }

    kms_ops = 2 * replays  # wrap at ingest + unwrap at read, per replay
    rows = [
        {
            "layout": "one object per segment",
            "flush_mib": None,
            **dollars(1e6, gets["one object per segment"], kms_ops),
        }
    ]
    for entry in written["by_flush_size"]:
        rows.append(
            {
                "layout": "packed",
                "flush_mib": entry["flush_mib"],
                **dollars(entry["objects_per_million_segments"], gets["coalesced ranges"], kms_ops),
            }
        )
    return {
        "prices": PRICES,
        "stored_gb_per_million_segments": round(stored_gb, 3),
        "per_million_segments_per_month": rows,
    }


def traffic(bench: Bench) -> dict[str, Any]:
    """Replays live at once through the real flush and compaction (benchmarks/traffic.py): a
    small model in --quick, half an hour of arrivals at one a second otherwise."""
    module = _sibling("traffic")
    model = (
        module.TrafficModel(hours=0.05, arrivals_per_minute=6.0)
        if bench.quick
        else module.TrafficModel(hours=0.5, arrivals_per_minute=60.0)
    )
    results: dict[str, Any] = module.run(model, bodies=bench.bodies)
    results["recordings_from"] = bench.origin
    return results


def traffic_plot(results: dict[str, Any], path: Path) -> Path:
    """The traffic section's plot of GETs per full read against replay length, as a PNG."""
    written: Path = _sibling("traffic").plot(results, path)
    return written


def _sibling(name: str) -> Any:
    """A module beside this file (the source checkout's benchmarks/, or the wheel's copy)."""
    import importlib.util

    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"vault_store_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"benchmark module {path} is missing")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being made.
    import sys

    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(
    *,
    quick: bool,
    pg_url: str | None = None,
    recordings: Path | None = None,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """Every section, in order; the results as plain data."""
    bench = Bench(quick=quick, pg_url=pg_url, recordings=recordings)
    try:
        results: dict[str, Any] = {
            "quick": quick,
            # --quick measures too little data and too few rounds to compare with anything.
            "representative": not quick,
            "recordings_from": bench.origin,
            "machine": machine(),
        }
        for name, section in (
            ("ingest", ingest),
            ("writes", writes),
            ("reads", reads),
            ("deletes", deletes),
        ):
            progress(name)
            results[name] = section(bench)
        progress("cost")
        results["cost"] = cost(results["ingest"], results["writes"], results["reads"])
        progress("traffic")
        results["traffic"] = traffic(bench)
        return results
    finally:
        bench.close()


def machine() -> dict[str, Any]:
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
