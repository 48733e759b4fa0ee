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

from sqlalchemy import select

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog, audit
from vault_store.catalog.models import Blob
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
    with catalog.connection("gc") as conn:
        known = set(conn.execute(select(Blob.path)).scalars())
        dead = conn.execute(
            select(Blob.path, Blob.size).where(Blob.live_bytes <= 0, Blob.state != "deleted")
        ).all()
    orphans = [
        info
        for info in blob_store.list()
        if info.path not in known and info.created_at <= now - grace
    ]
    freed = sum(info.size for info in orphans) + sum(size for _, size in dead)
    if not dry_run:
        for info in orphans:
            # Another collector may have removed it meanwhile; the generation guard keeps a
            # delete from removing anything written at that path after the listing.
            with contextlib.suppress(BlobNotFound, GenerationMismatch):
                blob_store.delete(info.path, if_generation=info.generation)
        for path, _size in dead:
            forget_blob(catalog, blob_store, path, now)
        with catalog.transaction("gc") as conn:
            audit.append(
                conn,
                kind="gc.run",
                actor="vault-store",
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
        dead=[path for path, _ in dead],
        bytes_freed=freed,
        dry_run=dry_run,
    )
