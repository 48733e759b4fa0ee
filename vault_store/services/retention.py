"""Retention: rows past their expiry are deleted in chunks; expired blobs leave a local store.

Every frame of a blob shares its expiry (one buffer per retention class), so a blob expires
whole. On PostgreSQL whole partitions of expired rows are dropped first (see maintenance). Then
the expired blobs are deleted from the store, local or GCS alike (GCS lifecycle rules, a day
later, are only the backstop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog
from vault_store.errors import BlobNotFound
from vault_store.services.maintenance import drop_expired_partitions

# A long job's progress: (step, done, total or None when not known ahead), after each unit.
StepProgress = Callable[[str, int, "int | None"], None]


def quiet(_step: str, _done: int, _total: int | None) -> None:
    """The progress callback of a caller that shows none."""


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run removed."""

    rows_expired: int
    blobs_deleted: int
    bytes_deleted: int


def expire(
    catalog: Catalog,
    blob_store: BlobStore,
    *,
    now: datetime | None = None,
    chunk_rows: int = 5000,
    delete_blobs: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: StepProgress | None = None,
) -> RetentionResult:
    """Drop fully expired partitions (PostgreSQL), delete the other expired rows chunk by
    chunk, then expired blobs (if this store must do it). `progress` is told (step, done,
    total) after each chunk of rows and each blob."""
    report = progress or quiet
    now = now or clock()
    _dropped, rows_expired = drop_expired_partitions(catalog, now)
    while chunk := catalog.blobs.expire_rows(now, chunk_rows):
        rows_expired += chunk
        report("expired rows", rows_expired, None)
    blobs_deleted = bytes_deleted = 0
    if delete_blobs:
        expired = catalog.blobs.expired(now)
        for blob in expired:
            forget_blob(catalog, blob_store, blob.path, now)
            blobs_deleted += 1
            bytes_deleted += blob.size
            report("expired blobs", blobs_deleted, len(expired))
    catalog.blobs.record_expiry(
        at=clock(),
        details={
            "expired_before": now.isoformat(),
            "rows_expired": rows_expired,
            "blobs_deleted": blobs_deleted,
            "bytes_deleted": bytes_deleted,
        },
    )
    return RetentionResult(rows_expired, blobs_deleted, bytes_deleted)


def forget_blob(catalog: Catalog, blob_store: BlobStore, path: str, now: datetime) -> None:
    """Delete a blob from the store, then mark it deleted; its pending overwrites are moot."""
    # Already gone if an earlier run stopped between this delete and the update below.
    with contextlib.suppress(BlobNotFound):
        blob_store.delete(path)
    catalog.blobs.forget(path, now)
