"""Blobs as the catalog tracks them: live bytes, dead and expired ones, forgetting them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, select, update

from vault_store.catalog import audit
from vault_store.catalog.models import Blob, OverwriteJob, RecordingByteRange
from vault_store.catalog.partitions import delete_rows
from vault_store.catalog.records import BlobSize, BlobState, ByteRange, as_utc

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog


class BlobRepository:
    """The blob table: what GC, retention, lifecycle rules and overwrites need of it."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def known_paths(self) -> set[str]:
        """Every blob path the catalog has a record of (whatever its state)."""
        with self._catalog.connection("gc") as conn:
            return set(conn.execute(select(Blob.path)).scalars())

    def dead(self) -> list[BlobSize]:
        """Blobs with no live byte left that are still in the store."""
        with self._catalog.connection("gc") as conn:
            rows = conn.execute(
                select(Blob.path, Blob.size).where(
                    Blob.live_bytes <= 0, Blob.state != BlobState.DELETED.value
                )
            ).all()
        return [BlobSize(path, size) for path, size in rows]

    def expired(self, now: datetime) -> list[BlobSize]:
        """Blobs whose content has expired by `now` that are still in the store."""
        with self._catalog.connection("expire") as conn:
            rows = conn.execute(
                select(Blob.path, Blob.size).where(
                    Blob.expires_at <= now, Blob.state != BlobState.DELETED.value
                )
            ).all()
        return [BlobSize(path, size) for path, size in rows]

    def expires_at(self, path: str) -> datetime:
        """A blob's expiry (a rewrite keeps it, so it never extends retention)."""
        with self._catalog.connection("overwrite") as conn:
            moment: datetime = conn.execute(
                select(Blob.expires_at).where(Blob.path == path)
            ).scalar_one()
        return as_utc(moment)

    def retention_classes(self) -> set[int]:
        """Every retention class (days) the catalog has blobs of."""
        with self._catalog.connection("lifecycle") as conn:
            return set(conn.execute(select(Blob.retention_days).distinct()).scalars())

    def expire_rows(self, now: datetime, limit: int) -> int:
        """Delete up to `limit` rows expired by `now` and lower their blobs' live bytes, in one
        transaction; how many (0: none left)."""
        with self._catalog.transaction("expire") as conn:
            chunk = delete_rows(conn, RecordingByteRange.expires_at <= now, limit)
            lower_live_bytes(conn, chunk)
        return len(chunk)

    def forget(self, path: str, now: datetime) -> None:
        """Mark a blob deleted from the store; its pending overwrites are moot (done at `now`)."""
        with self._catalog.transaction("expire") as conn:
            conn.execute(
                update(Blob)
                .where(Blob.path == path)
                .values(state=BlobState.DELETED.value, live_bytes=0)
            )
            conn.execute(
                update(OverwriteJob)
                .where(OverwriteJob.blob_path == path, OverwriteJob.done_at.is_(None))
                .values(done_at=now)
            )

    def record_gc(self, *, at: datetime, details: Mapping[str, Any]) -> None:
        """Audit one garbage collection."""
        record_event(self._catalog, "gc", kind="gc.run", at=at, details=details)

    def record_expiry(self, *, at: datetime, details: Mapping[str, Any]) -> None:
        """Audit one retention run."""
        record_event(self._catalog, "expire", kind="retention.run", at=at, details=details)


def lower_live_bytes(conn: Connection, rows: Iterable[ByteRange]) -> int:
    """Subtract deleted rows from their blobs' live bytes; a blob with nothing live left
    becomes dead. Returns the bytes subtracted."""
    per_blob: dict[str, int] = defaultdict(int)
    for row in rows:
        per_blob[row.blob_path] += row.size
    for path, size in per_blob.items():
        remaining = Blob.live_bytes - size
        conn.execute(
            update(Blob)
            .where(Blob.path == path)
            .values(
                live_bytes=remaining,
                state=case((remaining <= 0, BlobState.DEAD.value), else_=Blob.state),
            )
        )
    return sum(per_blob.values())


def record_event(
    catalog: Catalog, op: str, *, kind: str, at: datetime, details: Mapping[str, Any]
) -> None:
    """Append one audit event by vault-store itself, in its own transaction."""
    with catalog.transaction(op) as conn:
        audit.append(conn, kind=kind, actor="vault-store", at=at, details=details)
