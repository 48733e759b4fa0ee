"""Celery workers on RabbitMQ against the library alone, on the same real-recording messages.

Run:  python benchmarks/worker_throughput.py [--copies N] [--pg URL] [--broker URL] [--rate R]
      [--seconds S] [--burst N] [--json]

1. Throughput: the same shuffled relay messages (the real recordings, each replayed `--copies`
   times under fresh replay ids) are ingested by the library in this process (ingest_message,
   then flush), then by one and by two `vault-store worker` processes (default pool: 2 threads)
   from a pre-filled RabbitMQ queue (and by one worker with `--pool prefork --concurrency 1`,
   which seals in a child process instead of a thread), with batches of 5,000 and a 1 s age
   (so the last, partial batch does not wait out the default 10 s). Worker time runs from the
   moment the workers are ready to the moment the last row is committed; segments/s and objects
   written per segment are reported for each, and the worker rates as a ratio of the library's.
2. Latency at the default flush settings (5,000 segments or 10 s): messages are enqueued at a
   steady `--rate` for `--seconds` to one worker, while this process polls the catalog every
   100 ms; the time from enqueue to the row being visible is reported as p50 and p99.
3. Crash recovery at the default flush settings: one worker takes 2,000 messages (it holds them
   prefetched, unacknowledged, in a batch that is not yet due), is killed with kill -9, and a
   new worker is started at once; the time from the kill to every segment being readable is
   reported, with the new worker's start-up time (part of it).
4. Memory: the peak resident set (VmHWM) of every worker process above, and of one worker
   taking a burst of `--burst` messages of the largest size (15 MiB, incompressible) with a
   VAULT_STORE_WORKER_MAX_HELD_BYTES of 64 MiB, then without that budget mattering.
5. CPU: CPU milliseconds per segment of the library's process and of the workers' (with their
   children), of the local RabbitMQ (beam.smp), and the machine's busy cores during each run
   (from /proc): on a machine whose cores are all busy, the rates measure the share each got.

Redis is not measured: it is not offered for ingest (README, Workers), and it serves only the
tasks queue, whose deletions this benchmark does not time. Everything runs on this machine:
PostgreSQL (a fresh schema), RabbitMQ, a local blob directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import func, select

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
# The batch in a child process, so sealing does not share the GIL with the consumer.
PREFORK = ("--pool", "prefork", "--concurrency", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 120 copies queue 20,280 messages (about 800 MB): six times a worker's prefetch window (half
    # its byte budget, about 3,400 of these messages), so a second worker finds work from the
    # start and the last windows are a small part of the run.
    parser.add_argument("--copies", type=int, default=120, help="replays per recording")
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--broker", default=BROKER_URL)
    parser.add_argument("--rate", type=float, default=300.0, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument(
        "--burst", type=int, default=24, help="largest (15 MiB) messages in the memory run"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from vault_store.services.samples import as_messages, as_replays, recordings_or_synthetic

    recordings, origin = recordings_or_synthetic()
    messages = as_messages(as_replays(recordings, copies=args.copies))
    distinct = distinct_segments(messages)
    results: dict[str, Any] = {"recordings": origin, "messages": len(messages)}
    results["library"] = run_library(messages, args.pg)
    runs = {"workers_1": (1, ()), "workers_2": (2, ()), "workers_1_prefork": (1, PREFORK)}
    for name, (count, extra) in runs.items():
        results[name] = run_workers(messages, distinct, args.pg, args.broker, count, extra)
        results[name]["ratio_to_library"] = round(
            results[name]["segments_per_s"] / results["library"]["segments_per_s"], 3
        )
        # CPU spent per segment, the workers' and the broker's against the library's: what the
        # rates would compare as on a machine with a core free for each process.
        worker_cpu = results[name]["cpu_ms_per_segment"] + (
            results[name]["broker_cpu_ms_per_segment"] or 0.0
        )
        results[name]["cpu_ratio_to_library"] = round(
            results["library"]["cpu_ms_per_segment"] / worker_cpu, 3
        )
    results["latency"] = run_latency(recordings, args.pg, args.broker, args.rate, args.seconds)
    results["recovery"] = run_recovery(messages[:2000], args.pg, args.broker)
    results["memory"] = run_memory(args.pg, args.broker, args.burst)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{len(messages):,} messages ({origin})")
    for name in ("library", *runs):
        row = results[name]
        ratio = f"  ({row['ratio_to_library']:.2f}x library)" if "ratio_to_library" in row else ""
        print(
            f"{name:>17}: {row['segments_per_s']:>8,.0f} segments/s, "
            f"{row['objects_per_segment']:.5f} objects/segment{ratio}"
            + (f", peak RSS {row['peak_rss_mib']} MiB" if "peak_rss_mib" in row else "")
        )
    latency = results["latency"]
    print(
        f"enqueue to readable at {latency['rate']:.0f} msg/s, default flush: "
        f"p50 {latency['p50_s']:.2f} s, p99 {latency['p99_s']:.2f} s "
        f"({latency['segments']:,} segments, {latency['blobs']} blobs)"
    )
    recovery = results["recovery"]
    print(
        f"kill -9 of a worker holding {recovery['segments']:,} segments: all readable "
        f"{recovery['kill_to_readable_s']:.1f} s after the kill (new worker ready after "
        f"{recovery['restart_to_ready_s']:.1f} s, default flush age 10 s)"
    )
    memory = results["memory"]
    print(
        f"burst of {memory['messages']} largest messages ({memory['burst_mib']} MiB), "
        f"VAULT_STORE_WORKER_MAX_HELD_BYTES {memory['budget_mib']} MiB: peak RSS "
        f"{memory['peak_rss_mib']} MiB (README bound {memory['bound_mib']} MiB); without the "
        f"budget {memory['unbounded_peak_rss_mib']} MiB"
    )
    for name in ("library", *runs):
        row = results[name]
        print(
            f"{name:>17}: CPU {row['cpu_ms_per_segment']:.2f} ms/segment"
            + (
                f" + broker {row['broker_cpu_ms_per_segment']:.2f}"
                if row.get("broker_cpu_ms_per_segment") is not None
                else ""
            )
            + f", machine busy {row['machine_busy_cores']:.1f} of {row['cores']} cores"
            + (
                f"  (library CPU / worker CPU {row['cpu_ratio_to_library']:.2f})"
                if "cpu_ratio_to_library" in row
                else ""
            )
        )


class Schema:
    """A fresh PostgreSQL schema, dropped at the end."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg2.connect(base) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {self.name}")
        self.url = f"{base}?options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        conn = psycopg2.connect(self.base)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {self.name} CASCADE")
        conn.close()


def environment(home: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "VAULT_STORE_HOME": str(home),
        "VAULT_STORE_DATABASE_URL": database_url,
        "VAULT_STORE_BROKER_URL": broker_url,
        "VAULT_STORE_QUEUE_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
        "VAULT_STORE_AUTO_MIGRATE": "false",
        **extra,
    }


def counts(catalog: Any) -> tuple[int, int]:
    from vault_store.catalog.models import Blob, RecordingByteRange

    with catalog.connection("bench") as conn:
        rows = conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one()
        blobs = conn.execute(select(func.count()).select_from(Blob)).scalar_one()
    return int(rows), int(blobs)


def segments(catalog: Any) -> int:
    from vault_store.catalog.models import RecordingByteRange

    with catalog.connection("bench") as conn:
        query = select(
            func.count(
                func.distinct(
                    func.concat(RecordingByteRange.replay_id, "/", RecordingByteRange.segment_id)
                )
            )
        )
        return int(conn.execute(query).scalar_one())


class CpuMeter:
    """CPU seconds spent between start and stop: by the given processes (and their children),
    by the local RabbitMQ (beam.smp) and by the whole machine (busy cores, from /proc/stat)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.broker = [int(p.name) for p in Path("/proc").iterdir() if _comm(p) == "beam.smp"]
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        own = sum(_cpu_ticks(pid) + sum(map(_cpu_ticks, children(pid))) for pid in self.pids)
        broker = sum(map(_cpu_ticks, self.broker))
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return own / ticks, broker / ticks, busy / ticks, time.perf_counter()

    def stop(self, segments: int) -> dict[str, Any]:
        end = self._read()
        own, broker, busy, wall = (b - a for a, b in zip(self.start, end, strict=True))
        return {
            "cpu_ms_per_segment": round(1000 * own / max(segments, 1), 3),
            "broker_cpu_ms_per_segment": round(1000 * broker / max(segments, 1), 3)
            if self.broker
            else None,
            "machine_busy_cores": round(busy / wall, 2),
            "cores": os.cpu_count(),
        }


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip() if proc.name.isdigit() else ""
    except OSError:
        return ""


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def run_library(messages: list[bytes], pg: str) -> dict[str, Any]:
    from vault_store import Settings, Vault

    schema = Schema(pg)
    try:
        with tempfile.TemporaryDirectory() as home:
            settings = Settings.from_env(environment(Path(home), schema.url, ""))
            vault = Vault.from_settings(replace(settings, auto_migrate=True))
            meter = CpuMeter([os.getpid()])
            started = time.perf_counter()
            for raw in messages:
                vault.ingest_message(raw)
            vault.flush()
            elapsed = time.perf_counter() - started
            cpu = meter.stop(len(messages))
            stored, blobs = segments(vault._catalog), counts(vault._catalog)[1]
            vault.close()
    finally:
        schema.drop()
    return {**result(stored, blobs, elapsed), **cpu}


def run_workers(
    messages: list[bytes],
    distinct: int,
    pg: str,
    broker_url: str,
    count: int,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    from vault_store import Settings
    from vault_store.catalog import Catalog
    from workers.app import create_app, send_ingest

    schema = Schema(pg)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as home:
            # A short age, so the last partial batch does not wait out 10 s and skew the rate.
            env = environment(Path(home), schema.url, broker_url, VAULT_STORE_FLUSH_MAX_AGE="1")
            catalog = Catalog(schema.url)
            catalog.migrate()
            app = create_app(Settings.from_env(env))
            with app.producer_or_acquire() as producer:
                for raw in messages:
                    send_ingest(app, raw, producer=producer)
            logs = [Path(home) / f"worker-{n}.log" for n in range(count)]
            processes = [start_worker(env, log, extra) for log in logs]
            while not all(log.exists() and "ready" in log.read_text() for log in logs):
                time.sleep(0.02)
            meter = CpuMeter([process.pid for process in processes])
            started = time.perf_counter()
            while segments(catalog) < distinct:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu = meter.stop(distinct)
            stored, blobs = segments(catalog), counts(catalog)[1]
            rss = max(peak_rss_mib(process.pid) for process in processes)
            catalog.dispose()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        schema.drop()
    return {**result(stored, blobs, elapsed), **cpu, "peak_rss_mib": rss}


def peak_rss_mib(pid: int) -> float:
    """The peak resident set of a process and its children (prefork), in MiB, from /proc."""
    pids = [pid, *children(pid)]
    peak = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return round(peak / 1024, 1)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def run_recovery(messages: list[bytes], pg: str, broker_url: str) -> dict[str, Any]:
    from vault_store import Settings
    from vault_store.catalog import Catalog
    from workers.app import create_app, send_ingest

    distinct = distinct_segments(messages)
    schema = Schema(pg)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as home:
            env = environment(Path(home), schema.url, broker_url)  # the default flush settings
            catalog = Catalog(schema.url)
            catalog.migrate()
            app = create_app(Settings.from_env(env))
            first_log = Path(home) / "first.log"
            processes.append(start_worker(env, first_log))
            while not first_log.exists() or "ready" not in first_log.read_text():
                time.sleep(0.02)
            with app.producer_or_acquire() as producer:
                for raw in messages:
                    send_ingest(app, raw, producer=producer)
            time.sleep(2)  # it has them all prefetched; its batch is due only at 10 s
            held = segments(catalog)
            processes[0].kill()
            killed = time.perf_counter()
            processes[0].wait(30)
            second_log = Path(home) / "second.log"
            processes.append(start_worker(env, second_log))
            while not second_log.exists() or "ready" not in second_log.read_text():
                time.sleep(0.02)
            ready = time.perf_counter() - killed
            while segments(catalog) < distinct:
                if time.perf_counter() - killed > 300:
                    raise RuntimeError("not recovered within 5 minutes")
                time.sleep(0.05)
            recovered = time.perf_counter() - killed
            catalog.dispose()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
        schema.drop()
    return {
        "segments": distinct,
        "readable_before_kill": held,
        "kill_to_readable_s": round(recovered, 2),
        "restart_to_ready_s": round(ready, 2),
    }


MIB = 1024 * 1024
# README (Workers, Memory): a worker stays under BASE + FACTOR x (budget + one largest message).
MEMORY_BASE_MIB = 300
MEMORY_FACTOR = 4


def largest_messages(count: int) -> list[bytes]:
    """`count` messages as close to the 15 MiB limit as they can be, with an uncompressed,
    incompressible rrweb body (nothing shrinks on the way in); one replay each."""
    from vault_store.core.message import MAX_MESSAGE_BYTES, build_message

    payload = base64.b64encode(os.urandom(768 * 1024))
    event = b'{"type":5,"timestamp":1,"data":{"tag":"blob","payload":"%s"}}' % payload
    body = b"[" + b",".join([event] * ((MAX_MESSAGE_BYTES - 4096) // (len(event) + 1))) + b"]"
    return [
        build_message(
            project_id=9, replay_id=f"{n + 1:032x}", segment_id=0, body=body, compress=False
        )
        for n in range(count)
    ]


def run_memory(pg: str, broker_url: str, count: int) -> dict[str, Any]:
    """Peak resident memory of one worker taking a burst of the largest messages, with a byte
    budget of 64 MiB and with one too large to matter (the prefetch alone then decides)."""
    budget = 64 * MIB
    burst = largest_messages(count)
    bounded = _burst_peak(burst, pg, broker_url, budget)
    unbounded = _burst_peak(burst, pg, broker_url, 1000 * budget)
    from vault_store.core.message import MAX_MESSAGE_BYTES

    return {
        "messages": count,
        "burst_mib": round(sum(map(len, burst)) / MIB),
        "budget_mib": budget // MIB,
        "peak_rss_mib": bounded,
        "bound_mib": round(MEMORY_BASE_MIB + MEMORY_FACTOR * (budget + MAX_MESSAGE_BYTES) / MIB),
        "unbounded_peak_rss_mib": unbounded,
    }


def _burst_peak(burst: list[bytes], pg: str, broker_url: str, budget: int) -> float:
    from vault_store import Settings
    from vault_store.catalog import Catalog
    from workers.app import create_app, send_ingest

    schema = Schema(pg)
    process = None
    try:
        with tempfile.TemporaryDirectory() as home:
            env = environment(
                Path(home),
                schema.url,
                broker_url,
                VAULT_STORE_FLUSH_MAX_AGE="1",
                VAULT_STORE_WORKER_MAX_HELD_BYTES=str(budget),
            )
            catalog = Catalog(schema.url)
            catalog.migrate()
            app = create_app(Settings.from_env(env))
            with app.producer_or_acquire() as producer:
                for raw in burst:
                    send_ingest(app, raw, producer=producer)
            log = Path(home) / "worker.log"
            process = start_worker(env, log)
            deadline = time.monotonic() + 300
            while segments(catalog) < len(burst):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the burst was not stored:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            peak = peak_rss_mib(process.pid)
            catalog.dispose()
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        schema.drop()
    return peak


def distinct_segments(messages: list[bytes]) -> int:
    """Distinct segments among the messages (what the catalog must end up holding)."""
    from vault_store.core.message import parse_message

    return len({(s.project_id, s.replay_id, s.segment_id) for s in map(parse_message, messages)})


def start_worker(
    env: dict[str, str], log: Path, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vault_store",
            "worker",
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            f"bench-{uuid.uuid4().hex[:6]}@%h",
            *extra,
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def run_latency(
    recordings: Any, pg: str, broker_url: str, rate: float, seconds: float
) -> dict[str, Any]:
    from vault_store import Settings
    from vault_store.catalog import Catalog
    from vault_store.catalog.models import RecordingByteRange
    from vault_store.services.samples import as_messages, as_replays
    from workers.app import create_app, send_ingest

    messages = as_messages(as_replays(recordings, copies=40))[: int(rate * seconds)]
    schema = Schema(pg)
    process = None
    try:
        with tempfile.TemporaryDirectory() as home:
            env = environment(Path(home), schema.url, broker_url)
            catalog = Catalog(schema.url)
            catalog.migrate()
            app = create_app(Settings.from_env(env))
            log = Path(home) / "worker.log"
            process = start_worker(env, log)
            while not log.exists() or "ready" not in log.read_text():
                time.sleep(0.02)
            from vault_store.core.message import parse_message

            identity = [parse_message(raw) for raw in messages]
            sent_at: dict[tuple[str, int], float] = {}
            seen_at: dict[tuple[str, int], float] = {}
            started = time.monotonic()
            next_poll = started
            index = 0
            with app.producer_or_acquire() as producer:
                while len(seen_at) < len(sent_at) or index < len(messages):
                    now = time.monotonic()
                    while index < len(messages) and started + index / rate <= now:
                        key = (identity[index].replay_id, identity[index].segment_id)
                        sent_at.setdefault(key, time.monotonic())
                        send_ingest(app, messages[index], producer=producer)
                        index += 1
                    if now >= next_poll:
                        next_poll = now + 0.1
                        with catalog.connection("bench") as conn:
                            rows = conn.execute(
                                select(RecordingByteRange.replay_id, RecordingByteRange.segment_id)
                            ).all()
                        stamp = time.monotonic()
                        for replay, segment in rows:
                            seen_at.setdefault((replay, segment), stamp)
                    if now - started > seconds + 60:
                        raise RuntimeError("the worker did not keep up within a minute")
                    time.sleep(0.005)
            latencies = sorted(seen_at[key] - sent_at[key] for key in sent_at)
            blobs = counts(catalog)[1]
            catalog.dispose()
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        schema.drop()
    return {
        "rate": rate,
        "segments": len(latencies),
        "blobs": blobs,
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[int(len(latencies) * 0.99) - 1], 3),
    }


def result(stored: int, blobs: int, elapsed: float) -> dict[str, Any]:
    return {
        "segments": stored,
        "blobs": blobs,
        "seconds": round(elapsed, 3),
        "segments_per_s": round(stored / elapsed, 1),
        "objects_per_segment": round(blobs / stored, 5),
    }


if __name__ == "__main__":
    main()
