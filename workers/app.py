"""The Celery app: queues, serializer, acknowledgement and redelivery settings, and the schedule.

Ingest messages are raw msgpack bytes carried by Celery's msgpack serializer (binary-safe, no
base64). `vault_store.ingest` is a celery-batches task: the worker seals messages as they arrive
(every workers.tasks.STAGE_INTERVAL) and, once the batch has VAULT_STORE_FLUSH_MAX_SEGMENTS of
them or the oldest is VAULT_STORE_FLUSH_MAX_AGE old, makes it durable (one blob per retention
class, more if one passes VAULT_STORE_FLUSH_MAX_BYTES) before any of its messages is
acknowledged. The tasks are in workers.tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from celery import Celery, signals

from vault_store.blobstore import BlobStore
from vault_store.errors import ConfigError
from vault_store.settings import FlushPolicy, Settings, WorkerPolicy
from vault_store.vault import Vault
from workers import tasks
from workers.broker import REDIS_INGEST_REFUSED, is_amqp, is_redis
from workers.tasks import (
    COMPACT_TASK,
    DEAD_LETTER_TASK,
    EXPIRE_TASK,
    GC_TASK,
    INGEST_TASK,
    MAINTAIN_TASK,
    OVERWRITE_TASK,
    RESUME_DELETION_TASK,
    TASKS_QUEUE,
)

__all__ = ["DEAD_LETTER_TASK", "INGEST_TASK", "RESUME_DELETION_TASK", "create_app", "send_ingest"]


def worker_vault(settings: Settings, *, blob_store: BlobStore | None = None) -> Vault:
    """A Vault for one worker thread: celery-batches decides the batches, so only the byte limit
    stays automatic, and flushes run in the caller's thread so a batch knows what became
    durable."""
    return Vault.from_settings(
        replace(settings, flush=FlushPolicy.bytes_only(settings.flush.max_bytes)),
        pipeline_flushes=False,
        blob_store=blob_store,
    )


def create_app(
    settings: Settings | None = None,
    *,
    vault_factory: Callable[[Settings], Vault] = worker_vault,
) -> Celery:
    """The Celery app over the settings' broker; `vault_factory` builds each thread's Vault."""
    settings = settings or Settings.from_env()
    policy = settings.workers
    if not policy.broker_url:
        raise ConfigError(
            "VAULT_STORE_BROKER_URL: the workers need a broker (redis://host:6379/0 or "
            "amqp://user:password@host:5672//)"
        )
    batch_size, batch_age = _batch_limits(settings.flush)
    app = Celery("vault_store", broker=policy.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="msgpack",
        accept_content=["msgpack"],
        task_ignore_result=True,
        result_backend=None,
        # Acknowledge after the work: a worker that dies mid-task leaves its messages queued.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # celery-batches can only batch what the worker has prefetched: room for a full batch
        # per pool thread, or batches would be cut at the prefetch limit.
        worker_prefetch_multiplier=max(4, math.ceil(batch_size * 1.2)),
        broker_transport_options=_transport_options(policy),
        broker_connection_retry_on_startup=True,
        **_queue_types(policy.broker_url),
        task_default_queue=policy.queue(TASKS_QUEUE),
        task_routes=tasks.routes(policy),
        beat_schedule=_beat_schedule(policy),
        worker_hijack_root_logger=False,
    )
    tasks.register(
        app,
        policy,
        options={
            INGEST_TASK: {
                "flush_every": batch_size,
                # Messages are staged (sealed) as they arrive; the batch is committed at its age.
                "flush_interval": min(tasks.STAGE_INTERVAL, batch_age),
                "batch_age": batch_age,
                "max_held_bytes": policy.max_held_bytes,
            }
        },
    )
    tasks.configure(app, settings, vault_factory)
    signals.worker_ready.connect(tasks.start_metrics, weak=False)
    signals.worker_shutdown.connect(tasks.close_vaults, weak=False)
    app.vault_store_settings = settings
    return app


def send_ingest(app: Celery, raw: bytes, **options: Any) -> None:
    """Enqueue one raw message for the ingest workers (on RabbitMQ, confirmed by the broker
    before this returns); ConfigError on a Redis broker, which can lose ingest messages."""
    if is_redis(app.conf.broker_url):
        raise ConfigError(REDIS_INGEST_REFUSED)
    app.send_task(INGEST_TASK, args=[raw], kwargs={"enqueued_at": time.time()}, **options)


def _transport_options(policy: WorkerPolicy) -> dict[str, Any]:
    url = policy.broker_url or ""
    if is_amqp(url):
        # Publisher confirms: a publish returns once the broker has taken the message (written
        # to the quorum queue's majority), and raises when it refused it, so `enqueue` and the
        # requeues and dead letters a batch sends before it is acknowledged are never assumed.
        return {"confirm_publish": True}
    if is_redis(url):
        return {
            "visibility_timeout": policy.visibility_timeout_seconds,
            # Look for a dead worker's expired messages often and on every look (kombu
            # otherwise scans on one look in ten), so they return soon after the timeout.
            "unacked_restore_interval": max(1.0, min(30.0, policy.visibility_timeout_seconds / 4)),
            "unacked_restore_throttle": 1,
        }
    return {}


def _queue_types(url: str | None) -> dict[str, Any]:
    """RabbitMQ: quorum queues (replicated, always durable; messages are persistent, Celery's
    default delivery mode), declared so for the routed queues as for the default one."""
    if url and is_amqp(url):
        return {
            "task_default_queue_type": "quorum",
            "task_create_missing_queue_type": "quorum",
            # Topic exchanges, which Celery's native delayed delivery (what a retry's countdown
            # uses with quorum queues) can route through; direct ones would hold the retry in
            # the worker until its time comes.
            "task_default_exchange_type": "topic",
            "task_create_missing_queue_exchange_type": "topic",
        }
    return {}


def _batch_limits(flush: FlushPolicy) -> tuple[int, float]:
    """The batch size and age celery-batches works to: the flush policy's count and age."""
    if flush.max_segments is None or flush.max_age_seconds is None:
        raise ConfigError("flush: the workers batch by segment count and age; set both")
    return flush.max_segments, flush.max_age_seconds


def _beat_schedule(policy: WorkerPolicy) -> dict[str, dict[str, Any]]:
    intervals = {
        GC_TASK: policy.gc_interval_seconds,
        EXPIRE_TASK: policy.expire_interval_seconds,
        OVERWRITE_TASK: policy.overwrite_interval_seconds,
        MAINTAIN_TASK: policy.maintain_interval_seconds,
        COMPACT_TASK: policy.compact_interval_seconds,
    }
    return {
        name: {"task": name, "schedule": timedelta(seconds=seconds)}
        for name, seconds in intervals.items()
    }
