"""Prometheus metrics of the API: requests, latencies, bytes sent, KMS calls, key-cache hits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _VaultCounters(Collector):
    """Reads the Vault's own counters at scrape time (they live in the reader and key cache)."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        for name, help_text in (
            ("backend_gets", "Ranged GETs sent to the blob store."),
            ("backend_bytes", "Bytes fetched from the blob store."),
            ("kms_unwraps", "Data keys unwrapped by the KMS."),
            ("key_cache_hits", "Data-key cache hits."),
            ("key_cache_misses", "Data-key cache misses."),
        ):
            yield CounterMetricFamily(f"vault_store_{name}", help_text, value=values.get(name, 0))


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self, vault_counters: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "vault_store_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "vault_store_http_request_seconds",
            "Time to the response headers, by route.",
            ["route"],
            registry=self.registry,
        )
        self._bytes = Counter(
            "vault_store_http_response_bytes",
            "Recording bytes sent (before compression).",
            registry=self.registry,
        )
        self.registry.register(_VaultCounters(vault_counters))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def bytes_sent(self, count: int) -> None:
        """Count recording bytes sent."""
        self._bytes.inc(count)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format."""
        return generate_latest(self.registry), CONTENT_TYPE
