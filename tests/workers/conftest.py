"""Worker fixtures: a broker (Redis, or RabbitMQ where asked), a PostgreSQL catalog shared by
the test and its worker processes, and per-test queue names."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.workers.harness import Worker, drop_queues, producer_app
from vault_store.catalog import Catalog

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _broker(name: str) -> str:
    url, port = BROKERS[name]
    need(_reachable(port), f"{name} not reachable on 127.0.0.1:{port}")
    return url


@pytest.fixture
def redis_url() -> str:
    return _broker("redis")


@pytest.fixture(params=["redis", "rabbitmq"])
def any_broker_url(request: pytest.FixtureRequest) -> str:
    return _broker(request.param)


@pytest.fixture
def worker_catalog(postgres_url: str) -> Iterator[Catalog]:
    catalog = Catalog(postgres_url)
    catalog.migrate()
    yield catalog
    catalog.dispose()


def make_env(
    tmp_path: Path, database_url: str, broker_url: str, **overrides: str
) -> dict[str, str]:
    """Environment for worker processes and the test's producer (unique queues per test)."""
    return {
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


class Workers:
    """Starts workers for a test and stops every one of them at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.started: list[Worker] = []

    def start(
        self, env: dict[str, str], *, module: str = "vault_store", args: tuple[str, ...] = ()
    ) -> Worker:
        from tests.workers.harness import environment

        log = self._tmp_path / f"worker-{len(self.started)}.log"
        worker = Worker(environment(env), log, module=module, args=args)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def cleanup_queues() -> Iterator[list[dict[str, str]]]:
    """Environments whose queues are dropped from the broker after the test."""
    envs: list[dict[str, str]] = []
    yield envs
    for env in envs:
        drop_queues(producer_app(env))


EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture
def worker_env(
    tmp_path: Path, postgres_url: str, worker_catalog: Catalog, cleanup_queues: list[dict[str, str]]
) -> EnvFactory:
    """Build a worker environment on the test's catalog and `broker_url`; its queues are
    dropped after the test."""

    def build(broker_url: str, **overrides: str) -> dict[str, str]:
        env = make_env(tmp_path, postgres_url, broker_url, **overrides)
        cleanup_queues.append(env)
        return env

    return build
