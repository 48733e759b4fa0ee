"""Helpers of the worker tests: real worker processes on a real broker, their environment, test
messages, and what the broker and the catalog hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from amqp.exceptions import ChannelError
from celery import Celery
from sqlalchemy import func, select

from vault_store import LocalBlobStore, LocalKms, Vault
from vault_store.catalog import Catalog
from vault_store.catalog.models import RecordingByteRange
from vault_store.core.message import build_message
from vault_store.settings import Settings
from workers.app import create_app, send_ingest
from workers.tasks import QUEUES

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}
# The brokers the README offers for ingest (Redis can lose a message under kill -9).
INGEST_BROKERS = ["rabbitmq"]


class Worker:
    """`vault-store worker` (or another worker module) as a process with its own log file."""

    def __init__(self, env: dict[str, str], log: Path, *, module: str, args: tuple[str, ...]):
        self.log = log
        self._handle = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                "--concurrency",
                "1",
                "--hostname",
                f"w-{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle",
                "--without-gossip",
                *args,
            ],
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """Alive and consuming (Celery logged "ready")."""
        return self.alive() and " ready." in self.output()

    def kill(self) -> None:
        """kill -9: no shutdown, no acknowledgements, no flush."""
        self.process.kill()
        self.process.wait(30)
        self._handle.close()

    def warm_shutdown(self, timeout: float = 60) -> int:
        """SIGTERM: Celery's warm shutdown."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._handle.close()
        return code

    def stop(self) -> None:
        if self.alive():
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Workers:
    """Starts workers for a test, each logging into the test's directory; the `workers` fixture
    stops every one of them at the test's end."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.started: list[Worker] = []

    def start(
        self, env: dict[str, str], *, module: str = "vault_store", args: tuple[str, ...] = ()
    ) -> Worker:
        log = self._tmp_path / f"worker-{len(self.started)}.log"
        worker = Worker(env, log, module=module, args=args)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def worker_environment(
    tmp_path: Path, database_url: str, broker_url: str, **overrides: str
) -> dict[str, str]:
    """The whole environment of a test's worker processes, its producer and its CLI runs: this
    process's, then the test's catalog, store, key file and broker, on queues of its own."""
    return {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": database_url,
        "VAULT_STORE_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "VAULT_STORE_KMS_URL": f"local-kms://{tmp_path / 'kek.json'}",
        "VAULT_STORE_BROKER_URL": broker_url,
        "VAULT_STORE_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:12]}",
        "VAULT_STORE_AUTO_MIGRATE": "false",
        "VAULT_STORE_PARTS": "off",
        "VAULT_STORE_FLUSH_MAX_AGE": "1",
        "VAULT_STORE_FLUSH_MAX_SEGMENTS": "500",
        "VAULT_STORE_BROKER_VISIBILITY_TIMEOUT": "8",
        "VAULT_STORE_FLUSH_RETRIES": "2",
        **overrides,
    }


def messages(replays: int, segments: int, *, project: int = 3) -> list[bytes]:
    """`segments` messages of each of `replays` replays, interleaved; segment n's events are
    [{"n": n}]."""
    return [
        build_message(
            project_id=project, replay_id=f"{r + 1:032x}", segment_id=n, body=b'[{"n":%d}]' % n
        )
        for n in range(segments)
        for r in range(replays)
    ]


def vault_over(catalog: Catalog, tmp_path: Path) -> Vault:
    """A Vault in the test process over the workers' catalog, store and key file."""
    return Vault(
        catalog=catalog,
        blob_store=LocalBlobStore(tmp_path / "blobs"),
        kms=LocalKms(tmp_path / "kek.json"),
    )


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, workers: tuple[Worker, ...] = ()
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            assert worker.alive(), f"worker died:\n{worker.output()[-4000:]}"
        time.sleep(0.2)
    logs = "\n".join(w.output()[-3000:] for w in workers)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


def row_count(catalog: Catalog) -> int:
    with catalog.connection("test") as conn:
        return int(conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one())


def stored_segments(catalog: Catalog) -> list[tuple[int, str, int]]:
    with catalog.connection("test") as conn:
        return [
            (int(p), str(r), int(s))
            for p, r, s in conn.execute(
                select(
                    RecordingByteRange.project_id,
                    RecordingByteRange.replay_id,
                    RecordingByteRange.segment_id,
                )
            )
        ]


def producer_app(env: dict[str, str]) -> Celery:
    return create_app(Settings.from_env(env))


def enqueue(app: Celery, messages: list[bytes]) -> None:
    with app.producer_or_acquire() as producer:
        for raw in messages:
            send_ingest(app, raw, producer=producer)


def scrape(port: int) -> dict[str, float]:
    """The worker's metrics as {series: value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def drop_queues(app: Celery) -> None:
    """Remove the test's queues from the broker."""
    with app.connection_for_write() as connection:
        for name in QUEUES:
            connection.default_channel.queue_delete(_policy(app).queue(name))


def queued(app: Celery, name: str) -> int:
    """Messages waiting in queue `name` (not those a worker holds unacknowledged)."""
    with app.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(
                _policy(app).queue(name), passive=True
            )
        except ChannelError:  # Redis drops an empty list; RabbitMQ: never declared
            return 0
        return int(declared.message_count)


def _policy(app: Celery) -> Any:
    return app.vault_store_settings.workers
