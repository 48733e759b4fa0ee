"""Prometheus metrics of the API: requests, latencies, bytes sent, KMS calls, key-cache hits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Label values come from these fixed sets only, so no request can add a series: a method outside
# them is "other", a status is its class, a route is its template (or "unmatched").
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The request method, or "other" for anything a client made up."""
    return method if method in _METHODS else "other"


def status_label(status: int) -> str:
    """The status class: "2xx", "4xx", ..."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


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
            "HTTP requests by route template, method and status class.",
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
        """Count one request and its latency; `route` must be a route template or "unmatched"
        (never the raw path)."""
        self._requests.labels(route, method_label(method), status_label(status)).inc()
        self._latency.labels(route).observe(seconds)

    def bytes_sent(self, count: int) -> None:
        """Count recording bytes sent."""
        self._bytes.inc(count)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format."""
        return generate_latest(self.registry), CONTENT_TYPE
