"""Ingest through real worker processes on a real broker: batching, acknowledgement, metrics,
poison messages, deleted targets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
from sqlalchemy import select

from tests.integration.helpers import read_events, tombstone
from tests.peers.gcs import free_port
from tests.workers.conftest import EnvFactory
from tests.workers.harness import (
    Workers,
    enqueue,
    messages,
    producer_app,
    queued,
    row_count,
    scrape,
    stored_segments,
    vault_over,
    wait_for,
)
from vault_store.catalog import Catalog
from vault_store.catalog.models import AuditEvent, Blob
from vault_store.core.message import build_message
from workers.dead_letters import drain


def test_a_worker_batches_messages_into_blobs_then_acknowledges(
    ingest_broker_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    port = free_port()
    env = worker_env(ingest_broker_url, VAULT_STORE_WORKER_METRICS_PORT=str(port))
    app = producer_app(env)
    enqueue(app, messages(6, 50))
    worker = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) == 300, timeout=60, what="300 rows", workers=(worker,)
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=10, what="an empty queue")

    with worker_catalog.connection("test") as conn:
        blobs = conn.execute(select(Blob.frame_count)).scalars().all()
    # 300 messages at 500 per batch: one age-triggered batch or a few, never one blob each.
    assert 1 <= len(blobs) <= 6 and sum(blobs) == 300
    reader = vault_over(worker_catalog, tmp_path)
    for r in range(6):
        assert read_events(reader, 3, f"{r + 1:032x}") == [[{"n": n}] for n in range(50)]

    metrics = scrape(port)
    assert metrics['vault_store_worker_segments_total{outcome="stored"}'] == 300
    assert metrics["vault_store_worker_flush_frames_count"] == len(blobs)
    assert metrics["vault_store_worker_queue_lag_seconds_count"] == 300
    assert metrics["vault_store_worker_enqueue_to_durable_seconds_count"] == 300

    # Acknowledged: a fresh worker finds nothing to redo after the visibility timeout.
    assert worker.warm_shutdown() == 0
    again = workers.start(env)
    wait_for(lambda: again.alive() and "ready" in again.output(), timeout=30, what="ready")
    assert row_count(worker_catalog) == 300 and queued(app, "ingest") == 0


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_ingesting(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    port = free_port()
    env = worker_env(rabbitmq_url, VAULT_STORE_WORKER_METRICS_PORT=str(port))
    app = producer_app(env)
    good = messages(2, 5)
    poison = [
        b"\x00 not msgpack at all",
        build_message(project_id=3, replay_id="not-hex", segment_id=0, body=b"[]"),
        build_message(project_id=3, replay_id="a" * 32, segment_id=0, body=b"{not json"),
    ]
    enqueue(app, [*good[:5], *poison, *good[5:]])
    app.send_task("vault_store.ingest", args=["a string, not bytes"])
    worker = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) == 10,
        timeout=60,
        what="the good messages",
        workers=(worker,),
    )
    wait_for(lambda: queued(app, "dead_letter") == 4, timeout=10, what="4 dead letters")

    enqueue(app, messages(1, 3, project=4))  # the worker is still ingesting after the poison
    wait_for(
        lambda: row_count(worker_catalog) == 13, timeout=60, what="a later batch", workers=(worker,)
    )
    metrics = scrape(port)
    assert (
        sum(v for k, v in metrics.items() if k.startswith("vault_store_worker_dead_letters_total"))
        == 4
    )

    letters = drain(app, requeue=False)
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 4
    assert any(r.startswith("replay_id:") for r in reasons)
    assert any(r.startswith("message:") for r in reasons)
    assert all("not json" not in r and "not msgpack at all" not in r for r in reasons)
    assert queued(app, "dead_letter") == 4  # listing puts them back
    # Not retried forever: nothing went back to the ingest queue.
    assert queued(app, "ingest") == 0


def test_segments_of_deleted_replays_are_dropped_counted_and_audited(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    env = worker_env(rabbitmq_url)
    tombstone(worker_catalog, 3, f"{1:032x}")  # replay 1 of project 3
    tombstone(worker_catalog, 5, None)  # all of project 5
    app = producer_app(env)
    enqueue(app, [*messages(2, 4), *messages(1, 3, project=5)])
    worker = workers.start(env)
    wait_for(
        lambda: row_count(worker_catalog) == 4,
        timeout=60,
        what="replay 2's rows",
        workers=(worker,),
    )
    wait_for(lambda: queued(app, "ingest") == 0, timeout=10, what="an empty queue")
    assert {(p, r) for p, r, _ in stored_segments(worker_catalog)} == {(3, f"{2:032x}")}
    with worker_catalog.connection("test") as conn:
        events = (
            conn.execute(
                select(AuditEvent.details).where(AuditEvent.kind == "ingest.dropped_deleted")
            )
            .scalars()
            .all()
        )
    details = [json.loads(e) if isinstance(e, str) else e for e in events]
    assert sum(d["segments"] for d in details) == 4 + 3
    assert orjson.dumps(details).count(b"1" * 32) == 0  # aggregate: no replay ids listed


def test_staged_messages_are_acknowledged_only_by_their_batch_commit(
    rabbitmq_url: str,
    worker_catalog: Catalog,
    tmp_path: Path,
    workers: Workers,
    worker_env: EnvFactory,
) -> None:
    """A worker seals messages as they arrive, but acknowledges them only when their batch is
    committed: killed with staged messages, it loses none of them to the next worker."""
    env = worker_env(rabbitmq_url, VAULT_STORE_FLUSH_MAX_AGE="3600")
    app = producer_app(env)
    enqueue(app, messages(4, 25))
    first = workers.start(env)
    wait_for(first.ready, timeout=60, what="the worker to be ready", workers=(first,))
    wait_for(lambda: queued(app, "ingest") == 0, timeout=60, what="the worker to take them")
    time.sleep(2)  # several 0.25 s staging rounds: all 100 are sealed into its buffer by now
    assert row_count(worker_catalog) == 0  # staged, not committed (the batch age is an hour)
    first.kill()
    wait_for(lambda: queued(app, "ingest") == 100, timeout=30, what="all 100 back on the queue")
    second = workers.start({**env, "VAULT_STORE_FLUSH_MAX_AGE": "1"})
    wait_for(
        lambda: row_count(worker_catalog) == 100, timeout=60, what="100 rows", workers=(second,)
    )
    assert sorted(stored_segments(worker_catalog)) == sorted(
        (3, f"{r + 1:032x}", n) for r in range(4) for n in range(25)
    )
