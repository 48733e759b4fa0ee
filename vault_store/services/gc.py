"""Garbage collection: orphan intents and fully dead blobs are deleted, nothing else.

Every flush records its blob's intent (path, pending) before uploading it. An orphan is an intent
still pending after the grace period: a flush that crashed between recording it and committing
its rows (the object may or may not exist). A dead blob has no live byte left (every frame
shredded, expired, or a duplicate). GC never lists the store: objects this catalog has no record
of (another store's blobs in a shared directory or bucket prefix, foreign files) are never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog
from vault_store.errors import BlobNotFound
from vault_store.services.retention import StepProgress, forget_blob, quiet

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
    progress: StepProgress | None = None,
) -> GcResult:
    """Find orphan intents older than `grace` and dead blobs; delete them unless `dry_run`.

    A dry run lists exactly what a run at the same moment would delete. `progress` is told
    (step, done, total) after each blob deleted.
    """
    report = progress or quiet
    now = clock()
    cutoff = now - grace
    orphans = catalog.blobs.orphans(cutoff)
    # A source blob compaction emptied within the grace period waits for the next run: a read
    # that listed its rows just before they were repointed may still fetch from it.
    dead = catalog.blobs.dead(settled_before=cutoff)
    if not dry_run:
        # Claimed in the catalog first: a flush committing its rows meanwhile keeps its blob.
        orphans = catalog.blobs.claim_orphans(orphans, cutoff)
        for done, path in enumerate(orphans, 1):
            # The crashed flush may have died before its upload.
            with contextlib.suppress(BlobNotFound):
                blob_store.delete(path)
            report("orphan blobs", done, len(orphans))
        for done, blob in enumerate(dead, 1):
            forget_blob(catalog, blob_store, blob.path, now)
            report("dead blobs", done, len(dead))
    freed = sum(blob.size for blob in dead)
    if not dry_run:
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
        orphans=list(orphans),
        dead=[blob.path for blob in dead],
        bytes_freed=freed,
        dry_run=dry_run,
    )
