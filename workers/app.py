"""The Celery app: queues, serializer, acknowledgement and redelivery settings, and the tasks.

Ingest messages are raw msgpack bytes carried by Celery's msgpack serializer (binary-safe, no
base64). `vault_store.ingest` is a celery-batches task: the worker collects messages until it has
VAULT_STORE_FLUSH_MAX_SEGMENTS of them or the oldest is VAULT_STORE_FLUSH_MAX_AGE old, then makes
the whole batch durable (one blob per retention class, more if one passes
VAULT_STORE_FLUSH_MAX_BYTES) before any message is acknowledged. Every other task makes one
library call and retries only on BackendUnavailable.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

from celery import Celery, Task, signals
from celery_batches import Batches, SimpleRequest

from vault_store.blobstore import BlobStore
from vault_store.errors import BackendUnavailable, ConfigError
from vault_store.services.gc import collect
from vault_store.services.lifecycle import retention_classes
from vault_store.services.maintenance import maintain
from vault_store.services.retention import expire as expire_rows
from vault_store.services.shredder import Scope
from vault_store.settings import FlushPolicy, Settings
from vault_store.vault import Vault
from workers import metrics
from workers.ingest import Delivery, IngestPolicy, ingest_batch

INGEST_TASK = "vault_store.ingest"
DEAD_LETTER_TASK = "vault_store.dead_letter"
RESUME_DELETION_TASK = "vault_store.resume_deletion"
# Retry settings of the non-ingest tasks: only a transient backend failure is worth another go.
_RETRYING: dict[str, Any] = {
    "autoretry_for": (BackendUnavailable,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


def worker_vault(settings: Settings, *, blob_store: BlobStore | None = None) -> Vault:
    """A Vault for one worker thread: flushes happen per batch, so only the byte limit stays
    automatic, and they run in the caller's thread so a batch knows what became durable."""
    batch_flush = FlushPolicy(
        max_bytes=settings.flush.max_bytes, max_segments=2**62, max_age_seconds=float(2**62)
    )
    return Vault.from_settings(
        replace(settings, flush=batch_flush), pipeline_flushes=False, blob_store=blob_store
    )


class _Vaults:
    """One Vault per worker thread (a Vault's buffers are not shared between threads)."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Vault]) -> None:
        self._settings = settings
        self._factory = factory
        self._local = threading.local()
        self._all: list[Vault] = []
        self._lock = threading.Lock()

    def get(self) -> Vault:
        vault: Vault | None = getattr(self._local, "vault", None)
        if vault is None:
            vault = self._factory(self._settings)
            self._local.vault = vault
            with self._lock:
                self._all.append(vault)
        return vault

    def close(self) -> None:
        with self._lock:
            vaults, self._all = self._all, []
        for vault in vaults:
            vault.close()


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
    app = Celery("vault_store", broker=policy.broker_url, set_as_current=False)
    batch_size = settings.flush.max_segments
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
        broker_transport_options={
            "visibility_timeout": policy.visibility_timeout_seconds,
            # Redis: look for a dead worker's expired messages often and on every look (kombu
            # otherwise scans on one look in ten), so they return soon after the timeout.
            "unacked_restore_interval": max(1.0, min(30.0, policy.visibility_timeout_seconds / 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=policy.queue("tasks"),
        task_routes={
            INGEST_TASK: {"queue": policy.queue("ingest")},
            DEAD_LETTER_TASK: {"queue": policy.queue("dead_letter")},
        },
        beat_schedule={
            "vault_store.gc": {
                "task": "vault_store.gc",
                "schedule": timedelta(seconds=policy.gc_interval_seconds),
            },
            "vault_store.expire": {
                "task": "vault_store.expire",
                "schedule": timedelta(seconds=policy.expire_interval_seconds),
            },
            "vault_store.overwrite_ranges": {
                "task": "vault_store.overwrite_ranges",
                "schedule": timedelta(seconds=policy.overwrite_interval_seconds),
            },
            "vault_store.catalog_maintain": {
                "task": "vault_store.catalog_maintain",
                "schedule": timedelta(seconds=policy.maintain_interval_seconds),
            },
        },
        worker_hijack_root_logger=False,
    )
    vaults = _Vaults(settings, vault_factory)
    outbox = CeleryOutbox(app)
    ingest_policy = IngestPolicy(
        max_attempts=policy.max_ingest_attempts, flush_retries=policy.flush_retries
    )

    @app.task(
        name=INGEST_TASK,
        base=Batches,
        flush_every=batch_size,
        flush_interval=settings.flush.max_age_seconds,
        acks_late=True,
    )
    def ingest(requests: list[SimpleRequest]) -> dict[str, Any]:
        """Make a batch of messages durable (or requeue or dead-letter each)."""
        deliveries = [_delivery(request) for request in requests]
        try:
            return asdict(ingest_batch(vaults.get(), deliveries, outbox, policy=ingest_policy))
        except BaseException as error:
            # celery-batches acknowledges the batch even when this raises: send every message
            # back first (duplicates are harmless, first write wins), then let it be logged.
            for delivery in deliveries:
                if delivery.attempt + 1 >= ingest_policy.max_attempts:
                    outbox.dead_letter(delivery, f"worker error: {type(error).__name__}")
                else:
                    outbox.requeue(delivery)
            raise

    @app.task(name=DEAD_LETTER_TASK, acks_late=True)
    def dead_letter(raw: object, reason: str, failed_at: float) -> None:
        """Workers do not consume the dead-letter queue; one told to puts the letter back, so
        it is never lost (`vault-store dead-letters` lists and requeues them)."""
        app.send_task(DEAD_LETTER_TASK, args=[raw, reason, failed_at])

    def shred(task: Task, scope: Scope, project_id: int, **request: Any) -> dict[str, Any]:
        # Celery keeps the task id across retries: the same deletion resumes, not a second one.
        deletion_id = uuid.UUID(str(task.request.id)).hex
        return vaults.get().shred(scope, project_id, deletion_id=deletion_id, **request).as_dict()

    @app.task(name="vault_store.shred_replay", bind=True, **_RETRYING)
    def shred_replay(
        task: Task,
        project_id: int,
        replay_id: str,
        requested_by: str,
        reason: str,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Delete one replay (idempotent under retries: the task id is the deletion id)."""
        return shred(
            task,
            Scope.REPLAY,
            project_id,
            replay_id=replay_id,
            requested_by=requested_by,
            reason=reason,
            overwrite=overwrite,
        )

    @app.task(name="vault_store.shred_user", bind=True, **_RETRYING)
    def shred_user(
        task: Task,
        project_id: int,
        user: str,
        requested_by: str,
        reason: str,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Delete every replay of a user of one project."""
        return shred(
            task,
            Scope.USER,
            project_id,
            user=user,
            requested_by=requested_by,
            reason=reason,
            overwrite=overwrite,
        )

    @app.task(name="vault_store.shred_project", bind=True, **_RETRYING)
    def shred_project(
        task: Task, project_id: int, requested_by: str, reason: str, overwrite: bool = False
    ) -> dict[str, Any]:
        """Delete a whole project, in resumable chunks."""
        return shred(
            task,
            Scope.PROJECT,
            project_id,
            requested_by=requested_by,
            reason=reason,
            overwrite=overwrite,
        )

    @app.task(name=RESUME_DELETION_TASK, **_RETRYING)
    def resume_deletion(deletion_id: str) -> dict[str, Any]:
        """Run a recorded deletion (`delete --async`) to the end."""
        return vaults.get().resume_deletion(deletion_id).as_dict()

    @app.task(name="vault_store.overwrite_ranges", **_RETRYING)
    def overwrite_ranges() -> dict[str, Any]:
        """Zero every pending overwrite range (forced overwrites)."""
        return asdict(vaults.get().overwriter.run())

    @app.task(name="vault_store.gc", **_RETRYING)
    def gc() -> dict[str, Any]:
        """Delete orphan and fully dead blobs."""
        vault = vaults.get()
        return asdict(collect(vault.catalog, vault.blob_store))

    @app.task(name="vault_store.expire", **_RETRYING)
    def expire() -> dict[str, Any]:
        """Expire rows (and, on the local store, blobs) past their retention."""
        vault = vaults.get()
        return asdict(expire_rows(vault.catalog, vault.blob_store))

    @app.task(name="vault_store.catalog_maintain", **_RETRYING)
    def catalog_maintain() -> dict[str, Any]:
        """Create partitions ahead and drop fully expired ones."""
        catalog = vaults.get().catalog
        return asdict(maintain(catalog, retention_classes=retention_classes(catalog)))

    def start_metrics(**_: object) -> None:
        if policy.metrics_port is not None:
            metrics.serve(policy.metrics_port, policy.metrics_address)

    def close_vaults(**_: object) -> None:
        vaults.close()

    signals.worker_ready.connect(start_metrics, weak=False)
    signals.worker_shutdown.connect(close_vaults, weak=False)
    app.vault_store_settings = settings
    return app


class CeleryOutbox:
    """Requeues and dead letters as new messages on the broker (sent before the batch is acked,
    so a crash in between leaves a duplicate, never a loss)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def requeue(self, delivery: Delivery) -> None:
        self._app.send_task(
            INGEST_TASK,
            args=[delivery.raw],
            kwargs={"attempt": delivery.attempt + 1, "enqueued_at": delivery.enqueued_at},
        )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._app.send_task(
            DEAD_LETTER_TASK,
            args=[delivery.raw, reason, time.time()],
        )


def send_ingest(app: Celery, raw: bytes, **options: Any) -> None:
    """Enqueue one raw message for the ingest workers."""
    app.send_task(INGEST_TASK, args=[raw], kwargs={"enqueued_at": time.time()}, **options)


def _delivery(request: SimpleRequest) -> Delivery:
    raw = request.args[0] if request.args else None
    kwargs = request.kwargs or {}
    attempt = kwargs.get("attempt", 0)
    enqueued_at = kwargs.get("enqueued_at")
    return Delivery(
        raw=raw,
        attempt=attempt if isinstance(attempt, int) else 0,
        enqueued_at=float(enqueued_at) if isinstance(enqueued_at, int | float) else None,
    )
