"""Workers under crashes and failing backends: every segment ends readable exactly once."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.conftest import PG_URL, need
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


KILLS = 20


def test_20_kills_at_random_moments_during_an_ingest_lose_and_duplicate_nothing(
    ingest_broker_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    """Two workers take a steady stream of 3,000 segments while one of them, chosen at random
    among those ready, is killed with kill -9 at a random moment (0.2 to 1.5 s after it was
    chosen) and replaced, 20 times: afterwards every segment is readable exactly once. Longer
    runs: VAULT_STORE_TEST_KILLS=200."""
    kills = int(os.environ.get("VAULT_STORE_TEST_KILLS", KILLS))
    env = worker_env(ingest_broker_url, VAULT_STORE_FLUSH_MAX_SEGMENTS="200")
    app = producer_app(env)
    sent = messages(30, 100)  # 3,000 segments
    feeding = threading.Thread(target=enqueue_steadily, args=(app, sent, kills * 1.2), daemon=True)
    feeding.start()
    chance = random.Random()
    running = [workers.start(env), workers.start(env)]
    rows_at_kill = []
    for _ in range(kills):
        wait_for(lambda: any(w.ready() for w in running), timeout=60, what="a ready worker")
        victim = chance.choice([w for w in running if w.ready()])
        time.sleep(chance.uniform(0.2, 1.5))
        victim.kill()
        running.remove(victim)
        rows_at_kill.append(row_count(worker_catalog))
        running.append(workers.start(env))
    feeding.join(120)
    assert not feeding.is_alive(), "the producer did not finish"
    mid_ingest = [r for r in rows_at_kill if 0 < r < len(sent)]
    assert len(mid_ingest) >= kills // 2, f"too few kills in the middle: {rows_at_kill}"

    wait_for(
        lambda: row_count(worker_catalog) >= len(sent),
        timeout=120,
        what=f"{len(sent):,} rows",
        workers=tuple(running),
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=30, what="an empty queue")
    time.sleep(2)  # anything redelivered late must still not show up twice
    assert queued(app, "dead_letter") == 0
    assert_exactly_once(worker_catalog, tmp_path, 30, 100)


def enqueue_steadily(app: Any, sent: list[bytes], seconds: float) -> None:
    """Send `sent` spread evenly over about `seconds`, in small bursts."""
    bursts = [sent[i : i + 50] for i in range(0, len(sent), 50)]
    for burst in bursts:
        enqueue(app, burst)
        time.sleep(seconds / len(bursts))


def test_a_rabbitmq_restart_in_the_middle_of_an_ingest_loses_nothing(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    """`rabbitmqctl stop_app` / `start_app` while a worker holds unacknowledged messages and more
    wait queued: the (quorum, durable) queue keeps them and the worker reconnects."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    need(rabbitmqctl is not None, "rabbitmqctl not installed")
    assert rabbitmqctl is not None
    env = worker_env(rabbitmq_url, VAULT_STORE_FLUSH_MAX_SEGMENTS="100")
    app = producer_app(env)
    enqueue(app, messages(20, 100))  # 2,000 segments
    worker = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) >= 300, timeout=60, what="300 rows", workers=(worker,)
    )
    subprocess.run([rabbitmqctl, "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        done_during = row_count(worker_catalog)
        time.sleep(3)
    finally:
        subprocess.run([rabbitmqctl, "start_app"], check=True, capture_output=True, timeout=120)
    assert done_during < 2000, "the worker finished before the broker stopped"
    wait_for(
        lambda: row_count(worker_catalog) >= 2000, timeout=120, what="2,000 rows", workers=(worker,)
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=30, what="an empty queue")
    assert_exactly_once(worker_catalog, tmp_path, 20, 100)


def test_lost_upload_answers_and_a_catalog_outage_lose_nothing_and_gc_takes_the_orphans(
    rabbitmq_url: str,
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
            rabbitmq_url,
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
    ingest_broker_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    # A batch that fills slowly: the worker holds the messages, unacknowledged, when stopped.
    env = worker_env(
        ingest_broker_url,
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
