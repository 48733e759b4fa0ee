"""Prometheus metrics of an ingest worker, served on VAULT_STORE_WORKER_METRICS_PORT when set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

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


def serve(port: int, address: str) -> None:
    """Serve /metrics over HTTP in a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
