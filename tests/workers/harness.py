"""Real worker processes on a real broker, for the worker tests."""

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

from vault_store.catalog import Catalog
from vault_store.catalog.models import RecordingByteRange
from vault_store.settings import Settings
from workers.app import create_app, send_ingest


class Worker:
    """`vault-store worker` (or another worker module) as a process with its own log file."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        module: str = "vault_store",
        args: tuple[str, ...] = (),
    ) -> None:
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
    policy: Any = app.vault_store_settings.workers
    with app.connection_for_write() as connection:
        for name in ("ingest", "tasks", "dead_letter"):
            connection.default_channel.queue_delete(policy.queue(name))


def queued(app: Celery, name: str) -> int:
    """Messages waiting in queue `name` (not those a worker holds unacknowledged)."""
    policy: Any = app.vault_store_settings.workers
    with app.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(policy.queue(name), passive=True)
        except ChannelError:  # Redis drops an empty list; RabbitMQ: never declared
            return 0
        return int(declared.message_count)


def environment(base: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**os.environ, **base, **overrides}
