"""Workers under crashes and failing backends: every segment ends readable exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from tests.conftest import PG_URL
from tests.integration.helpers import read_events
from tests.peers.tcp_proxy import TcpProxy
from tests.workers.conftest import EnvFactory
from tests.workers.harness import (
    Workers,
    enqueue,
    messages,
    producer_app,
    queued,
    row_count,
    stored_segments,
    vault_over,
    wait_for,
)
from vault_store.catalog import Catalog
from vault_store.catalog.models import Blob
from vault_store.services.gc import collect


def assert_exactly_once(catalog: Catalog, tmp_path: Path, replays: int, segments: int) -> None:
    stored = stored_segments(catalog)
    assert len(stored) == replays * segments
    assert max(Counter(stored).values()) == 1
    reader = vault_over(catalog, tmp_path)
    for r in range(replays):
        events = read_events(reader, 3, f"{r + 1:032x}")
        assert events == [[{"n": n}] for n in range(segments)]


def test_kill_9_in_the_middle_of_5000_segments_loses_and_duplicates_nothing(
    any_broker_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    env = worker_env(any_broker_url)
    app = producer_app(env)
    enqueue(app, messages(50, 100))  # 5,000 segments
    first = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) >= 1000, timeout=120, what="1,000 rows", workers=(first,)
    )
    first.kill()
    done_before = row_count(worker_catalog)
    assert done_before < 5000, "the worker finished before it could be killed"

    # Redis hands the dead worker's unacknowledged messages back after the visibility timeout
    # (8 s here), RabbitMQ as soon as its connection drops.
    second = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) == 5000, timeout=180, what="5,000 rows", workers=(second,)
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=30, what="an empty queue")
    time.sleep(2)  # anything redelivered late must still not show up twice
    assert_exactly_once(worker_catalog, tmp_path, 50, 100)


def test_lost_upload_answers_and_a_catalog_outage_lose_nothing_and_gc_takes_the_orphans(
    redis_url: str,
    worker_catalog: Catalog,
    postgres_url: str,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    host, port = "127.0.0.1", int(PG_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy((host, port))
    try:
        through_proxy = postgres_url.replace(f"{host}:{port}", f"{host}:{proxy.port}")
        env = worker_env(
            redis_url,
            VAULT_STORE_DATABASE_URL=through_proxy,
            FLAKY_PUT_EVERY="3",  # every third upload lands but reports failure
            VAULT_STORE_FLUSH_MAX_SEGMENTS="100",
            VAULT_STORE_INGEST_MAX_ATTEMPTS="50",
        )
        app = producer_app(env)
        enqueue(app, messages(10, 100))  # 1,000 segments
        worker = workers.start(env, module="tests.peers.flaky_worker")
        wait_for(
            lambda: row_count(worker_catalog) >= 200,
            timeout=120,
            what="200 rows",
            workers=(worker,),
        )
        proxy.block()  # the catalog refuses connections for a while
        time.sleep(4)
        proxy.unblock()
        wait_for(
            lambda: row_count(worker_catalog) == 1000,
            timeout=180,
            what="1,000 rows",
            workers=(worker,),
        )
        wait_for(lambda: queued(app, "ingest") == 0, timeout=30, what="an empty queue")
    finally:
        proxy.stop()
    assert_exactly_once(worker_catalog, tmp_path, 10, 100)
    log = worker.output()
    assert "injected: answer lost" in log
    assert "catalog" in log and "failed" in log, "the outage must have hit the worker"

    vault = vault_over(worker_catalog, tmp_path)
    on_disk = {info.path for info in vault._blob_store.list()}
    with worker_catalog.connection("test") as conn:
        # A lost answer leaves its blob's intent pending (issue 15): that is what GC takes.
        recorded = set(
            conn.execute(select(Blob.path).where(Blob.state.in_(("live", "dead")))).scalars()
        )
    orphans = on_disk - recorded
    assert orphans, "lost answers must have left orphan blobs"
    result = collect(worker_catalog, vault._blob_store, grace=timedelta(0))
    assert set(result.orphans) == orphans
    assert {info.path for info in vault._blob_store.list()} == recorded
    assert_exactly_once(worker_catalog, tmp_path, 10, 100)


def test_warm_shutdown_in_the_middle_of_a_batch_loses_nothing(
    any_broker_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    # A batch that fills slowly: the worker holds the messages, unacknowledged, when stopped.
    env = worker_env(
        any_broker_url,
        VAULT_STORE_FLUSH_MAX_AGE="60",
        VAULT_STORE_FLUSH_MAX_SEGMENTS="5000",
    )
    app = producer_app(env)
    enqueue(app, messages(4, 50))
    first = workers.start(env)
    wait_for(
        lambda: queued(app, "ingest") == 0,
        timeout=60,
        what="the worker to take them",
        workers=(first,),
    )
    assert first.warm_shutdown() == 0
    with worker_catalog.connection("test") as conn:
        stored_before = conn.execute(select(func.count()).select_from(Blob)).scalar_one()
    assert stored_before == 0, "the batch was not in the middle"

    quick = {**env, "VAULT_STORE_FLUSH_MAX_AGE": "1"}
    second = workers.start(quick)
    wait_for(
        lambda: row_count(worker_catalog) == 200, timeout=120, what="200 rows", workers=(second,)
    )
    assert_exactly_once(worker_catalog, tmp_path, 4, 50)
