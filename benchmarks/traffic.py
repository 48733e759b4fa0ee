"""Traffic model: replays live at once, through the real packer, flush, catalog and compaction.

Replays arrive as a Poisson process; their lengths follow a Pareto law (heavy tail) capped at 60
minutes; each sends a segment every 5 to 5.5 seconds (the Sentry SDK's flushMinDelay and
flushMaxDelay); segment bodies are drawn from the real recordings; segments are routed to W
workers, at random or by replay. A simulated clock drives real Vaults (one per worker, sharing a
SQLite catalog, a local blob directory and a key file), so hours of traffic run in minutes with
the workers' real batch policy (a blob per worker every 10 s). Then compaction runs (the real
code) and everything is measured again: blobs touched per replay by length, ranged GETs and bytes
per full read, modeled read time, objects written, KMS calls and dollars per million segments.

    python benchmarks/traffic.py [--hours H] [--per-minute N] [--workers W] [--json]

Read time is modeled, not measured: the defaults (50 ms to first byte, 100 MB/s per stream) are
assumptions for a reader in the bucket's region, not numbers from Google; pass your own.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vault_store import Catalog, FlushPolicy, LocalBlobStore, LocalKms, ReadPolicy, Segment, Vault
from vault_store.blobstore import Buffers
from vault_store.core.coalesce import plan_fetches
from vault_store.core.crypto import DataKey
from vault_store.core.keys import KeyContext, WrappedKey
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import recordings_or_synthetic

# List prices (USD) as in benchmarks/suite.py: GCS class A and B operations, storage, Cloud KMS.
PRICES = {
    "gcs_class_a_per_1000": 0.005,
    "gcs_class_b_per_1000": 0.0004,
    "gcs_storage_per_gb_month": 0.020,
    "kms_per_10000": 0.03,
}
HOURS_PER_MONTH = 730.0
# Replay length bins (segments) for the per-length tables.
BINS = ((1, 12), (13, 60), (61, 180), (181, 360), (361, 720))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficModel:
    """The traffic and the cost assumptions; every default is stated in the README."""

    hours: float = 1.0
    arrivals_per_minute: float = 6.0
    workers: int = 4
    # Pareto lengths: P(L > x) = (min_seconds / x) ** shape, capped at max_seconds.
    pareto_shape: float = 1.1
    min_seconds: float = 20.0
    max_seconds: float = 3600.0
    # The Sentry SDK flushes a segment between flushMinDelay (5 s) and flushMaxDelay (5.5 s).
    segment_min_seconds: float = 5.0
    segment_max_seconds: float = 5.5
    # The workers' batch: a blob per worker every 10 s (VAULT_STORE_FLUSH_MAX_AGE).
    batch_seconds: float = 10.0
    retention_days: int = 30
    # Modeled reads: time to first byte and bandwidth per stream (assumptions, see above).
    ttfb_seconds: float = 0.05
    bandwidth_bytes_per_second: float = 100e6
    read_concurrency: int = 8
    # Extra storage of compaction: sources wait for gc (interval 1 h + grace 1 h), then GCS soft
    # delete keeps them (7 days by default; 0 with soft delete off).
    gc_delay_hours: float = 2.0
    soft_delete_days: float = 7.0
    seed: int = 19


class _CountingStore(LocalBlobStore):
    """A local store that counts object writes and ranged GETs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts = 0
        self.gets = 0
        self.bytes_read = 0

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        self.puts += 1
        super().put(path, data, expires_at=expires_at, custom_time=custom_time)

    def get_range(self, path: str, start: int, stop: int) -> bytes:
        self.gets += 1
        data = super().get_range(path, start, stop)
        self.bytes_read += len(data)
        return data


class _CountingKms(LocalKms):
    """The local key file, counting wraps and unwraps (what Cloud KMS would bill)."""

    wraps = 0
    unwraps = 0

    def wrap(self, key: DataKey, context: KeyContext) -> WrappedKey:
        self.wraps += 1
        return super().wrap(key, context)

    def unwrap(self, ciphertext: bytes, context: KeyContext) -> DataKey:
        self.unwraps += 1
        return super().unwrap(ciphertext, context)


@dataclass(frozen=True, slots=True)
class _Arrival:
    at: float
    replay: str
    segment: int


def arrivals(model: TrafficModel, rng: random.Random) -> list[_Arrival]:
    """Every segment of every replay that starts within the window, in time order."""
    found = []
    now = 0.0
    rate = model.arrivals_per_minute / 60.0
    while True:
        now += rng.expovariate(rate)
        if now > model.hours * 3600:
            break
        length = min(
            model.max_seconds, model.min_seconds * (1 - rng.random()) ** (-1 / model.pareto_shape)
        )
        replay = uuid.UUID(int=rng.getrandbits(128)).hex
        at, n = now, 0
        while True:
            found.append(_Arrival(at, replay, n))
            n += 1
            at += rng.uniform(model.segment_min_seconds, model.segment_max_seconds)
            if at > now + length or n >= 720:
                break
    found.sort(key=lambda a: a.at)
    return found


def simulate(
    model: TrafficModel,
    bodies: list[bytes],
    root: Path,
    *,
    routing: str,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """One run of the model with `routing` ("random" or "by replay"): before and after."""
    rng = random.Random(model.seed)
    events = arrivals(model, rng)
    start = datetime(2026, 12, 7, tzinfo=UTC)
    clock = [0.0]
    catalog = Catalog(f"sqlite:///{root / 'catalog.sqlite3'}")
    catalog.migrate()
    store = _CountingStore(root / "blobs")
    kms = _CountingKms(root / "kek.json")
    read_policy = ReadPolicy()
    vaults = [
        Vault(
            catalog=catalog,
            blob_store=store,
            kms=kms,
            flush_policy=FlushPolicy(
                max_bytes=8 * 1024 * 1024, max_segments=5000, max_age_seconds=model.batch_seconds
            ),
            read_policy=read_policy,
            typed_parts=False,
            pipeline_flushes=False,
            clock=lambda: start + timedelta(seconds=clock[0]),
            monotonic=lambda: clock[0],
        )
        for _ in range(model.workers)
    ]
    owner: dict[str, int] = {}
    next_tick = 1.0
    started = time.perf_counter()
    for index, event in enumerate(events):
        while next_tick <= event.at:
            clock[0] = next_tick
            for vault in vaults:
                vault.flush_due()
            next_tick += 1.0
        clock[0] = event.at
        if routing == "by replay":
            worker = owner.setdefault(event.replay, len(owner) % model.workers)
        else:
            worker = rng.randrange(model.workers)
        vaults[worker].ingest_segment(
            Segment(
                project_id=1,
                replay_id=event.replay,
                segment_id=event.segment,
                body=rng.choice(bodies),
                retention_days=model.retention_days,
            )
        )
        if index % 5000 == 0:
            progress(f"{routing}: {index:,} of {len(events):,} segments")
    clock[0] += model.batch_seconds
    for vault in vaults:
        vault.flush()
    ingest_seconds = time.perf_counter() - started
    segments = len(events)
    flush_objects = store.puts
    wraps = kms.wraps
    replays = sorted({e.replay for e in events})
    before = _reads(catalog, replays, read_policy, model)
    stored_bytes = catalog.stats().bytes_stored

    # Compaction once every replay is finished (idle past the default 30 minutes).
    clock[0] += 3600.0
    puts, unwraps_before = store.puts, kms.unwraps
    result = vaults[0].compact()
    compaction_objects = store.puts - puts
    if (kms.wraps, kms.unwraps) != (wraps, unwraps_before):
        raise AssertionError("compaction called the KMS")
    superseded = vaults[0].compaction_stats().superseded_bytes
    after = _reads(catalog, replays, read_policy, model)

    # The paged reader as it is today, on the longest replay, before GC deletes the sources.
    longest = max(replays, key=lambda r: len(catalog.replay_ranges(1, r, limit=100_000)))
    gets = store.gets
    read_back = sum(len(chunk) for chunk in vaults[0].read_recording(1, longest))
    paged_gets = store.gets - gets
    gc = vaults[0].collect_garbage(grace=timedelta(0))
    for vault in vaults:
        vault.close()

    return {
        "routing": routing,
        "segments": segments,
        "replays": len(replays),
        "simulated_hours": round(events[-1].at / 3600, 2) if events else 0,
        "ingest_seconds": round(ingest_seconds, 1),
        "objects_written": {
            "flush": flush_objects,
            "compaction": compaction_objects,
            "per_million_segments_flush": round(flush_objects / segments * 1e6),
            "per_million_segments_compaction": round(compaction_objects / segments * 1e6, 1),
            "compacted_segments_per_compaction_write": round(
                result.rows_moved / max(compaction_objects, 1)
            ),
        },
        "kms": {
            "wraps_per_million_segments": round(wraps / segments * 1e6),
            "unwraps_per_full_read_of_every_replay_per_million_segments": round(
                before["unwraps"] / segments * 1e6
            ),
            "calls_by_compaction": 0,
        },
        "compaction": {
            "replays_compacted": result.replays_compacted,
            "blobs_written": result.blobs_written,
            "bytes_copied": result.bytes_copied,
            "source_gets": result.source_gets,
            "superseded_bytes_until_gc": superseded,
            "gc_blobs_deleted": len(gc.dead),
            "gc_bytes_freed": gc.bytes_freed,
        },
        "stored_bytes": stored_bytes,
        "by_length": _by_length(before["per_replay"], after["per_replay"]),
        "longest_replay": {
            "segments": len(catalog.replay_ranges(1, longest, limit=100_000)),
            "gets_before": before["per_replay"][longest]["gets"],
            "gets_after": after["per_replay"][longest]["gets"],
            "blobs_before": before["per_replay"][longest]["blobs"],
            "paged_reader_gets_after": paged_gets,
            "bytes_read": read_back,
        },
        "points": [
            (
                before["per_replay"][r]["segments"],
                before["per_replay"][r]["gets"],
                after["per_replay"][r]["gets"],
            )
            for r in replays
        ],
        "cost": _cost(
            model,
            segments,
            flush_objects,
            compaction_objects,
            wraps,
            before,
            after,
            stored_bytes,
            superseded,
        ),
    }


def _reads(
    catalog: Catalog, replays: list[str], policy: ReadPolicy, model: TrafficModel
) -> dict[str, Any]:
    """A full read of each replay as the reader plans it (rows in order, nearby ranges of a blob
    merged), with its modeled time; and the unwraps a cold read makes (one per distinct key)."""
    per_replay: dict[str, dict[str, Any]] = {}
    unwraps = 0
    for replay in replays:
        rows = catalog.replay_ranges(1, replay, limit=100_000)
        fetches = plan_fetches(
            [(r.blob_path, r.start, r.stop) for r in rows],
            gap=policy.gap_bytes,
            max_span=policy.max_fetch_bytes,
        )
        fetched = sum(f.stop - f.start for f in fetches)
        waves = math.ceil(len(fetches) / model.read_concurrency)
        per_replay[replay] = {
            "segments": len({r.segment_id for r in rows}),
            "blobs": len({r.blob_path for r in rows}),
            "gets": len(fetches),
            "bytes": fetched,
            "seconds": waves * model.ttfb_seconds + fetched / model.bandwidth_bytes_per_second,
            "first_byte_seconds": model.ttfb_seconds if fetches else 0.0,
        }
        unwraps += len({r.wrapped_dek for r in rows})
    gets = sum(p["gets"] for p in per_replay.values())
    return {"per_replay": per_replay, "unwraps": unwraps, "gets": gets}


def _by_length(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for low, high in BINS:
        names = [r for r, p in before.items() if low <= p["segments"] <= high]
        if not names:
            continue

        def median(table: dict[str, Any], key: str, names: list[str] = names) -> float:
            return round(float(statistics.median(table[r][key] for r in names)), 3)

        rows.append(
            {
                "segments": f"{low}-{high}",
                "replays": len(names),
                "blobs_touched_before": median(before, "blobs"),
                "gets_before": median(before, "gets"),
                "gets_after": median(after, "gets"),
                "max_gets_after": max(after[r]["gets"] for r in names),
                "bytes_per_read": median(after, "bytes"),
                "read_seconds_before": median(before, "seconds"),
                "read_seconds_after": median(after, "seconds"),
                "first_byte_seconds_after": median(after, "first_byte_seconds"),
            }
        )
    return rows


def _cost(
    model: TrafficModel,
    segments: int,
    flush_objects: int,
    compaction_objects: int,
    wraps: int,
    before: dict[str, Any],
    after: dict[str, Any],
    stored_bytes: int,
    superseded: int,
) -> dict[str, Any]:
    """USD per million segments for a month: writes, storage, one full read of every replay,
    KMS; one object per segment against packed, before and after compaction."""
    scale = 1e6 / segments
    storage_gb = stored_bytes * scale / 1e9
    storage = storage_gb * PRICES["gcs_storage_per_gb_month"]
    # Superseded copies stay until gc, then in soft delete: a share of one month's storage.
    extra_hours = model.gc_delay_hours + model.soft_delete_days * 24
    extra_storage = (
        superseded
        * scale
        / 1e9
        * PRICES["gcs_storage_per_gb_month"]
        * (extra_hours / HOURS_PER_MONTH)
    )
    unwraps = before["unwraps"] * scale
    kms = (wraps * scale + unwraps) * PRICES["kms_per_10000"] / 10000

    def total(objects: float, gets: float, extra: float = 0.0) -> dict[str, float]:
        parts = {
            "writes": objects * PRICES["gcs_class_a_per_1000"] / 1000,
            "storage": storage + extra,
            "reads": gets * PRICES["gcs_class_b_per_1000"] / 1000,
            "kms": kms,
        }
        return {
            **{k: round(v, 4) for k, v in parts.items()},
            "total": round(sum(parts.values()), 4),
        }

    naive = total(1e6, 1e6)
    packed = total(flush_objects * scale, before["gets"] * scale)
    compacted = total(
        (flush_objects + compaction_objects) * scale, after["gets"] * scale, extra_storage
    )
    return {
        "one_object_per_segment": naive,
        "packed": packed,
        "packed_and_compacted": compacted,
        "compacted_saving_against_one_object_per_segment": round(
            1 - compacted["total"] / naive["total"], 3
        ),
        "extra_storage_share_of_month": round(extra_storage / storage, 4) if storage else 0.0,
        "extra_storage_share_without_soft_delete": round(
            extra_storage / storage * model.gc_delay_hours / extra_hours, 5
        )
        if storage
        else 0.0,
    }


def run(
    model: TrafficModel,
    *,
    recordings: Path | None = None,
    routings: tuple[str, ...] = ("random", "by replay"),
    bodies: list[bytes] | None = None,
    progress: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """The model under each routing, with real recordings' bodies (or synthetic ones, or
    `bodies` as given)."""
    if bodies is None:
        found, origin = recordings_or_synthetic(recordings)
        bodies = [b for r in found for b in segment_bodies(r.events)]
    else:
        origin = "given"
    results: dict[str, Any] = {"model": asdict(model), "recordings_from": origin, "prices": PRICES}
    with tempfile.TemporaryDirectory(prefix="vault-traffic-") as scratch:
        for routing in routings:
            root = Path(scratch) / routing.replace(" ", "_")
            root.mkdir()
            results[routing.replace(" ", "_")] = simulate(
                model, bodies, root, routing=routing, progress=progress
            )
    return results


def plot(results: dict[str, Any], path: Path) -> Path:
    """GETs per full read against replay length, before and after compaction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for key, color in (("random", "tab:red"), ("by_replay", "tab:blue")):
        if key not in results:
            continue
        points = sorted(results[key]["points"])
        axis.scatter(
            [p[0] for p in points],
            [p[1] for p in points],
            s=6,
            color=color,
            alpha=0.5,
            label=f"before compaction, routed {key.replace('_', ' ')}",
        )
        axis.scatter(
            [p[0] for p in points],
            [p[2] for p in points],
            s=10,
            marker="x",
            color=color,
            label=f"after compaction, routed {key.replace('_', ' ')}",
        )
    axis.set_xlabel("replay length (segments)")
    axis.set_ylabel("ranged GETs per full read")
    axis.set_yscale("log")
    axis.legend(fontsize=8)
    axis.set_title("Ranged GETs to read a whole replay, before and after compaction")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = TrafficModel()
    parser.add_argument("--hours", type=float, default=defaults.hours)
    parser.add_argument("--per-minute", type=float, default=defaults.arrivals_per_minute)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--ttfb-ms", type=float, default=defaults.ttfb_seconds * 1000)
    parser.add_argument(
        "--mb-per-second", type=float, default=defaults.bandwidth_bytes_per_second / 1e6
    )
    parser.add_argument("--soft-delete-days", type=float, default=defaults.soft_delete_days)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--min-seconds", type=float, default=defaults.min_seconds, help="Pareto scale of lengths"
    )
    parser.add_argument(
        "--routing", choices=("random", "by-replay", "both"), default="both", help="segment routing"
    )
    parser.add_argument("--plot", type=Path, help="write the GETs-per-read plot (PNG) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model = TrafficModel(
        hours=args.hours,
        arrivals_per_minute=args.per_minute,
        workers=args.workers,
        ttfb_seconds=args.ttfb_ms / 1000,
        bandwidth_bytes_per_second=args.mb_per_second * 1e6,
        soft_delete_days=args.soft_delete_days,
        min_seconds=args.min_seconds,
        seed=args.seed,
    )
    routings = (
        ("random", "by replay") if args.routing == "both" else (args.routing.replace("-", " "),)
    )
    results = run(model, routings=routings, progress=lambda line: print(line, file=sys.stderr))
    if args.plot:
        plot(results, args.plot)
    keys = [key for key in ("random", "by_replay") if key in results]
    if args.json:
        for key in keys:
            results[key].pop("points", None)
        print(json.dumps(results, indent=2))
        return
    for key in keys:
        section = results[key]
        section.pop("points", None)
        print(f"\n== routed {key.replace('_', ' ')} ==")
        print(json.dumps({k: v for k, v in section.items() if k != "by_length"}, indent=2))
        for row in section["by_length"]:
            print(row)


if __name__ == "__main__":
    main()
