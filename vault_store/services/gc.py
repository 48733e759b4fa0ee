"""Garbage collection: orphan blobs (no catalog record) and fully dead blobs are deleted.

An orphan is what a flush leaves when it crashes between uploading a blob and committing its
rows; it is only collected after a grace period, so a flush still in progress is never touched.
A dead blob has no live byte left (every frame shredded, expired, or a duplicate).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog
from vault_store.errors import BlobNotFound, GenerationMismatch
from vault_store.services.retention import forget_blob

DEFAULT_GRACE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class GcResult:
    """Blobs found (and, unless a dry run, deleted)."""

    orphans: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    dry_run: bool = False


def collect(
    catalog: Catalog,
    blob_store: BlobStore,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GcResult:
    """Find orphans older than `grace` and dead blobs; delete them unless `dry_run`."""
    now = clock()
    known = catalog.blobs.known_paths()
    dead = catalog.blobs.dead()
    orphans = [
        info
        for info in blob_store.list()
        if info.path not in known and info.created_at <= now - grace
    ]
    freed = sum(info.size for info in orphans) + sum(blob.size for blob in dead)
    if not dry_run:
        for info in orphans:
            # Another collector may have removed it meanwhile; the generation guard keeps a
            # delete from removing anything written at that path after the listing.
            with contextlib.suppress(BlobNotFound, GenerationMismatch):
                blob_store.delete(info.path, if_generation=info.generation)
        for blob in dead:
            forget_blob(catalog, blob_store, blob.path, now)
        catalog.blobs.record_gc(
            at=now,
            details={
                "orphans_deleted": len(orphans),
                "dead_deleted": len(dead),
                "bytes_freed": freed,
                "grace_seconds": grace.total_seconds(),
            },
        )
    return GcResult(
        orphans=[info.path for info in orphans],
        dead=[blob.path for blob in dead],
        bytes_freed=freed,
        dry_run=dry_run,
    )
