"""Prometheus metrics of an ingest worker, served on VAULT_STORE_WORKER_METRICS_PORT when set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from vault_store.catalog.compaction import CompactionStats
    from vault_store.services.compaction import CompactionResult

REGISTRY = CollectorRegistry()

QUEUE_LAG = Histogram(
    "vault_store_worker_queue_lag_seconds",
    "Time from enqueue to the start of the batch that took the message.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
ENQUEUE_TO_DURABLE = Histogram(
    "vault_store_worker_enqueue_to_durable_seconds",
    "Time from enqueue until the segment's blob and rows are committed.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
FLUSH_SEGMENTS = Histogram(
    "vault_store_worker_flush_frames",
    "Frames packed into one blob.",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
    registry=REGISTRY,
)
FLUSH_BYTES = Histogram(
    "vault_store_worker_flush_bytes",
    "Size of one written blob.",
    buckets=(2**14, 2**17, 2**20, 2**21, 2**22, 2**23, 2**24, 2**26),
    registry=REGISTRY,
)
FLUSH_SECONDS = Histogram(
    "vault_store_worker_flush_seconds",
    "Time to write one batch's blobs and rows (upload and commit).",
    registry=REGISTRY,
)
SEGMENTS = Counter(
    "vault_store_worker_segments",
    "Messages handled by outcome: stored, duplicate, dropped_deleted, requeued, dead_lettered.",
    ["outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "vault_store_worker_dead_letters",
    "Messages sent to the dead-letter queue, by the field or stage that refused them.",
    ["reason"],
    registry=REGISTRY,
)


REPLAYS_COMPACTED = Counter(
    "vault_store_worker_replays_compacted",
    "Finished replays copied into compacted blobs.",
    registry=REGISTRY,
)
BYTES_COPIED = Counter(
    "vault_store_worker_compaction_bytes_copied",
    "Sealed bytes copied (unchanged) into compacted blobs.",
    registry=REGISTRY,
)
COMPACTED_BLOBS = Counter(
    "vault_store_worker_compacted_blobs_written",
    "Compacted blobs written (object writes compaction adds).",
    registry=REGISTRY,
)
DEAD_BYTES = Gauge(
    "vault_store_worker_dead_bytes_waiting_for_gc",
    "Stored bytes no row points at any more (shredded, expired, duplicates, superseded by "
    "compaction), as of the last compaction run; gc deletes a blob once all of it is dead.",
    registry=REGISTRY,
)
SUPERSEDED_BYTES = Gauge(
    "vault_store_worker_superseded_bytes",
    "Bytes of compaction's old copies still in source blobs, as of the last compaction run.",
    registry=REGISTRY,
)


def record_compaction(result: CompactionResult, stats: CompactionStats, dead_bytes: int) -> None:
    """Count one compaction run, and the dead bytes it leaves for gc."""
    REPLAYS_COMPACTED.inc(result.replays_compacted)
    BYTES_COPIED.inc(result.bytes_copied)
    COMPACTED_BLOBS.inc(result.blobs_written)
    DEAD_BYTES.set(dead_bytes)
    SUPERSEDED_BYTES.set(stats.superseded_bytes)


def serve(port: int, address: str) -> None:
    """Serve /metrics over HTTP in a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
