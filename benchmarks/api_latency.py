"""Recording endpoint latency: packed blobs (the real API) against one object per segment.

Run:  python benchmarks/api_latency.py [--requests N] [--get-latency-ms MS] [--json]

The same 100-segment replay (real recordings, SDK-sized segments) is stored twice: packed by
vault-store, and as one sealed object per segment. Two servers run as separate uvicorn processes
on 127.0.0.1: the real API, and a minimal naive server reading one object per segment with the
same crypto, key caching and fetch concurrency. The client alternates requests between them, so
both see the same machine noise, and reports p50/p99 latency, then requests/s with 4 concurrent
clients. `--get-latency-ms` adds a fixed delay to every blob GET on both servers, to model an
object store's time to first byte (GCS is typically 20-50 ms); 0 measures the local disk only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

SEGMENTS = 100
PROJECT = 1


def prepare(home: Path) -> tuple[str, str]:
    """Store one 100-segment replay packed and one object per segment; return (replay, token)."""
    from vault_store import Segment, Settings, Vault
    from vault_store.core.crypto import DataKey, FrameIdentity, seal
    from vault_store.core.rrweb import segment_bodies
    from vault_store.kms import KeyContext
    from vault_store.services.samples import recordings_or_synthetic

    recordings, _origin = recordings_or_synthetic()
    bodies = [body for r in recordings for body in segment_bodies(r.events)][:SEGMENTS]
    assert len(bodies) == SEGMENTS, "not enough segments in the recordings"
    replay = uuid.uuid4().hex
    vault = Vault.from_settings(Settings.embedded(home))
    for n, body in enumerate(bodies):
        vault.ingest_segment(
            Segment(
                project_id=PROJECT, replay_id=replay, segment_id=n, body=body, retention_days=90
            )
        )
    vault.flush()
    token = vault.issue_token([PROJECT], ["read"]).token
    key = DataKey.generate()
    wrapped = vault._kms.wrap(key, KeyContext(PROJECT, replay))
    naive = home / "naive"
    naive.mkdir()
    for n, body in enumerate(bodies):
        (naive / f"{n:06d}.frame").write_bytes(seal(body, key, FrameIdentity(PROJECT, replay, n)))
    (naive / "index.json").write_text(
        json.dumps({"replay": replay, "wrapped": wrapped.ciphertext.hex(), "segments": SEGMENTS})
    )
    vault.close()
    return replay, token


def serve(kind: str, home: Path, port: int, get_latency_ms: float) -> None:
    """Run one server (in a child process)."""
    import uvicorn
    from fastapi import FastAPI, Response

    from vault_store import Settings, Vault
    from vault_store.api import create_app
    from vault_store.blobstore import LocalBlobStore

    delay = get_latency_ms / 1000

    class SlowStore(LocalBlobStore):
        """Adds a fixed time to first byte to every GET (0: local disk only)."""

        def get_range(self, path: str, start: int, stop: int) -> bytes:
            time.sleep(delay)
            return super().get_range(path, start, stop)

        def get(self, path: str) -> bytes:
            time.sleep(delay)
            return super().get(path)

    vault = Vault.from_settings(Settings.embedded(home))
    store = SlowStore(home / ("blobs" if kind == "packed" else "naive"))
    vault._blob_store = store
    vault._reader._blob_store = store
    if kind == "packed":
        uvicorn.run(create_app(lambda: vault), host="127.0.0.1", port=port, log_level="warning")
        return
    from vault_store.core.crypto import FrameIdentity, open_frame
    from vault_store.kms import KeyContext

    index = json.loads((home / "naive" / "index.json").read_text())
    app = FastAPI()
    pool = ThreadPoolExecutor(8)  # the same fetch concurrency as the reader

    @app.get("/naive/recording")
    def recording() -> Response:
        replay = index["replay"]
        key = vault._read_keys.get_or_load(
            ("naive", replay),
            (PROJECT, replay),
            lambda: vault._kms.unwrap(bytes.fromhex(index["wrapped"]), KeyContext(PROJECT, replay)),
        )

        def one(n: int) -> bytes:
            frame = store.get(f"{n:06d}.frame")
            return open_frame(frame, key, FrameIdentity(PROJECT, replay, n))

        bodies = list(pool.map(one, range(index["segments"])))
        return Response(b"[" + b",".join(bodies) + b"]", media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def backend_gets(metrics_url: str) -> float:
    """The packed server's own count of ranged GETs, from /metrics."""
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("vault_store_backend_gets_total "):
            return float(line.split()[1])
    raise RuntimeError("the server does not report vault_store_backend_gets_total")


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per server")
    parser.add_argument("--get-latency-ms", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", choices=["packed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.home, args.port, args.get_latency_ms)
        return

    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        replay, token = prepare(home)
        ports = {"packed": free_port(), "naive": free_port()}
        servers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve",
                    kind,
                    "--home",
                    str(home),
                    "--port",
                    str(port),
                    "--get-latency-ms",
                    str(args.get_latency_ms),
                ],
                env={**os.environ, "VAULT_STORE_HOME": str(home)},
            )
            for kind, port in ports.items()
        ]
        try:
            urls = {
                "packed": f"http://127.0.0.1:{ports['packed']}/v1/projects/{PROJECT}/replays/{replay}/recording",
                "naive": f"http://127.0.0.1:{ports['naive']}/naive/recording",
            }
            for url in urls.values():
                wait_up(url)
            metrics_url = f"http://127.0.0.1:{ports['packed']}/metrics"
            gets_before = backend_gets(metrics_url)
            results = measure(urls, token, args.requests)
            # Every request of both phases, plus the warm-up one.
            packed_requests = 2 * args.requests + 1
            results["layouts"]["packed (vault-store)"]["gets_per_request"] = round(
                (backend_gets(metrics_url) - gets_before) / packed_requests, 2
            )
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=15)
    results["get_latency_ms"] = args.get_latency_ms
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"recording of a {SEGMENTS}-segment replay, {args.requests} requests each, "
        f"added GET latency {args.get_latency_ms} ms"
    )
    print(f"{'layout':<28}{'p50 ms':>9}{'p99 ms':>9}{'req/s (4 clients)':>20}{'GETs/request':>14}")
    for kind, row in results["layouts"].items():
        print(
            f"{kind:<28}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['requests_per_second']:>20}{row['gets_per_request']:>14}"
        )
    speedup, ratio = results["p50_speedup"], results["throughput_ratio"]
    print(f"packed p50 speed-up: {speedup}x, throughput: {ratio}x")


def measure(urls: dict[str, str], token: str, requests: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    latencies: dict[str, list[float]] = {kind: [] for kind in urls}
    sizes: dict[str, int] = {}
    with httpx.Client(timeout=60) as client:
        for kind, url in urls.items():  # warm up: key caches, connections
            sizes[kind] = len(client.get(url, headers=headers).content)
        assert sizes["packed"] == sizes["naive"], "both layouts must return the same recording"
        for _ in range(requests):
            for kind, url in urls.items():  # alternate, so noise hits both alike
                started = time.perf_counter()
                reply = client.get(url, headers=headers)
                latencies[kind].append(time.perf_counter() - started)
                assert reply.status_code == 200
    throughput = {}
    for kind, url in urls.items():
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(4) as clients:
            started = time.perf_counter()
            list(clients.map(lambda _n, url=url: client.get(url, headers=headers), range(requests)))
            throughput[kind] = requests / (time.perf_counter() - started)
    layouts = {
        kind: {
            "p50_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
            "requests_per_second": round(throughput[kind], 1),
            "gets_per_request": SEGMENTS,  # naive: one object per segment; packed: measured
            "response_bytes": sizes[kind],
        }
        for kind, samples in latencies.items()
    }
    return {
        "layouts": {
            "packed (vault-store)": layouts["packed"],
            "one object per segment": layouts["naive"],
        },
        "p50_speedup": round(layouts["naive"]["p50_ms"] / layouts["packed"]["p50_ms"], 2),
        "throughput_ratio": round(throughput["packed"] / throughput["naive"], 2),
    }


if __name__ == "__main__":
    main()
