"""Worker fixtures: a broker (Redis, or RabbitMQ where asked), a PostgreSQL catalog shared by
the test and its worker processes, worker environments on per-test queues, and the workers."""

from __future__ import annotations

import fcntl
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import XDIST_WORKER, need
from tests.workers.harness import (
    BROKERS,
    INGEST_BROKERS,
    Workers,
    drop_queues,
    producer_app,
    worker_environment,
)
from vault_store.catalog import Catalog

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture(autouse=True)
def one_worker_test_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Under pytest-xdist, a lock that every worker test holds for its whole run: they share the
    brokers, and one restarts RabbitMQ. (The file is in the run's temporary directory, which all
    xdist processes of the run share.)"""
    if not XDIST_WORKER:
        yield
        return
    lock = tmp_path_factory.getbasetemp().parent / "worker-tests.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # let go of when the file is closed
        yield


def _broker(name: str) -> str:
    url, port = BROKERS[name]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        need(False, f"{name} not reachable on 127.0.0.1:{port}")
    return url


@pytest.fixture
def redis_url() -> str:
    return _broker("redis")


@pytest.fixture
def rabbitmq_url() -> str:
    return _broker("rabbitmq")


@pytest.fixture(params=INGEST_BROKERS)
def ingest_broker_url(request: pytest.FixtureRequest) -> str:
    """Each broker the README offers for ingest."""
    return _broker(request.param)


@pytest.fixture
def worker_catalog(postgres_url: str) -> Iterator[Catalog]:
    catalog = Catalog(postgres_url)
    catalog.migrate()
    yield catalog
    catalog.dispose()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def worker_env(tmp_path: Path, postgres_url: str, worker_catalog: Catalog) -> Iterator[EnvFactory]:
    """Build a worker environment (see `worker_environment`) on the test's catalog and
    `broker_url`; its queues are dropped from the broker after the test."""
    built: list[dict[str, str]] = []

    def build(broker_url: str, **overrides: str) -> dict[str, str]:
        env = worker_environment(tmp_path, postgres_url, broker_url, **overrides)
        built.append(env)
        return env

    yield build
    for env in built:
        drop_queues(producer_app(env))
