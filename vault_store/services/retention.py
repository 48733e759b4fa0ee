"""Retention: rows past their expiry are deleted in chunks; expired blobs leave a local store.

Every frame of a blob shares its expiry (one buffer per retention class), so a blob expires
whole. On PostgreSQL whole partitions of expired rows are dropped first (see maintenance). On
the local store this deletes the expired files; on GCS the lifecycle rules delete the objects
and this only updates the catalog.
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
) -> RetentionResult:
    """Drop fully expired partitions (PostgreSQL), delete the other expired rows chunk by
    chunk, then expired blobs (if this store must do it)."""
    now = now or clock()
    _dropped, rows_expired = drop_expired_partitions(catalog, now)
    while chunk := catalog.blobs.expire_rows(now, chunk_rows):
        rows_expired += chunk
    blobs_deleted = bytes_deleted = 0
    if delete_blobs:
        for blob in catalog.blobs.expired(now):
            forget_blob(catalog, blob_store, blob.path, now)
            blobs_deleted += 1
            bytes_deleted += blob.size
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
