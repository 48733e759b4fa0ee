"""Blobs as the catalog tracks them: live bytes, dead and expired ones, forgetting them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Connection,
    bindparam,
    case,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from vault_store.catalog import audit
from vault_store.catalog.models import Blob, OverwriteJob, RecordingByteRange, SupersededRange
from vault_store.catalog.partitions import delete_rows
from vault_store.catalog.records import BlobRecord, BlobSize, BlobState, ByteRange, as_utc

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog

# How long the record of a collected superseded copy is kept: GCS soft delete keeps a deleted
# object at most 90 days, and reports list such a copy until its window ends.
SUPERSEDED_KEPT_DAYS = 90


class BlobRepository:
    """The blob table: what GC, retention, lifecycle rules and overwrites need of it."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def record_intent(
        self, path: str, *, retention_days: int, created_at: datetime, expires_at: datetime
    ) -> None:
        """Record, before uploading it, that this store is about to write a blob at `path`.

        Committed before the upload, so a blob this store wrote always has a record: one whose
        rows were never recorded is a pending intent, the only thing GC calls an orphan. GC never
        looks at objects the catalog has no record of (another store's, or foreign files).
        """
        with self._catalog.transaction("insert") as conn:
            conn.execute(
                insert(Blob).values(
                    path=path,
                    size=0,
                    frame_count=0,
                    live_bytes=0,
                    retention_days=retention_days,
                    created_at=created_at,
                    expires_at=expires_at,
                    state=BlobState.PENDING.value,
                )
            )

    def orphans(self, before: datetime) -> list[str]:
        """Pending intents recorded before `before`: uploads whose rows were never recorded."""
        with self._catalog.connection("gc") as conn:
            return list(
                conn.execute(
                    select(Blob.path)
                    .where(Blob.state == BlobState.PENDING.value, Blob.created_at <= before)
                    .order_by(Blob.path)
                ).scalars()
            )

    def claim_orphans(self, paths: Iterable[str], before: datetime) -> list[str]:
        """Mark these intents deleted if they are still pending and older than `before`;
        returns those marked. A flush that commits its rows first keeps its blob; one that
        commits after finds its intent taken and fails (its segments are flushed again)."""
        claimed = []
        with self._catalog.transaction("gc") as conn:
            for path in paths:
                taken = conn.execute(
                    update(Blob)
                    .where(
                        Blob.path == path,
                        Blob.state == BlobState.PENDING.value,
                        Blob.created_at <= before,
                    )
                    .values(state=BlobState.DELETED.value)
                ).rowcount
                if taken:
                    claimed.append(path)
        return claimed

    def dead(self, *, settled_before: datetime | None = None) -> list[BlobSize]:
        """Blobs with no live byte left that are still in the store; with `settled_before`,
        not those compaction superseded a range of after it (a read that listed the rows just
        before they were repointed may still fetch from them)."""
        with self._catalog.connection("gc") as conn:
            rows = conn.execute(
                select(Blob.path, Blob.size).where(
                    Blob.live_bytes <= 0,
                    Blob.state.in_((BlobState.LIVE.value, BlobState.DEAD.value)),
                )
            ).all()
            recent = recently_superseded(conn, settled_before) if settled_before else set()
        return [BlobSize(path, size) for path, size in rows if path not in recent]

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
            lower_live_bytes(conn, chunk.bytes_per_blob)
        return chunk.rows

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
            forget_superseded(conn, path, now)

    def record_gc(self, *, at: datetime, details: Mapping[str, Any]) -> None:
        """Audit one garbage collection."""
        record_event(self._catalog, "gc", kind="gc.run", at=at, details=details)

    def record_expiry(self, *, at: datetime, details: Mapping[str, Any]) -> None:
        """Audit one retention run."""
        record_event(self._catalog, "expire", kind="retention.run", at=at, details=details)


def bytes_per_blob(rows: Iterable[ByteRange]) -> dict[str, int]:
    """The stored bytes of these ranges, summed per blob path (what lower_live_bytes takes)."""
    per_blob: dict[str, int] = defaultdict(int)
    for row in rows:
        per_blob[row.blob_path] += row.size
    return per_blob


def lower_live_bytes(conn: Connection, per_blob: Mapping[str, int]) -> int:
    """Subtract deleted bytes (per blob path) from their blobs' live bytes; a blob with nothing
    live left becomes dead. Returns the bytes subtracted."""
    if conn.dialect.name == "postgresql" and len(per_blob) > 1:
        # A chunk of whole replays touches many blobs: two statements, not one per blob. The
        # rows are locked in path order first, so two deletions sharing blobs cannot deadlock.
        paths = sorted(per_blob)
        conn.execute(
            text(
                "SELECT 1 FROM blob WHERE path = ANY(CAST(:paths AS text[])) "
                "ORDER BY path FOR UPDATE"
            ),
            {"paths": paths},
        )
        conn.execute(
            text(
                "UPDATE blob SET live_bytes = blob.live_bytes - v.size, state = CASE WHEN "
                "blob.live_bytes - v.size <= 0 THEN :dead ELSE blob.state END FROM "
                "unnest(CAST(:paths AS text[]), CAST(:sizes AS bigint[])) AS v(path, size) "
                "WHERE blob.path = v.path"
            ),
            {"paths": paths, "sizes": [per_blob[p] for p in paths], "dead": BlobState.DEAD.value},
        )
        return sum(per_blob.values())
    if not per_blob:
        return 0
    # One statement run for every blob (executemany), in path order.
    remaining = Blob.live_bytes - bindparam("lowered_by", type_=BigInteger)
    conn.execute(
        update(Blob)
        .where(Blob.path == bindparam("blob"))
        .values(
            live_bytes=remaining,
            state=case((remaining <= 0, BlobState.DEAD.value), else_=Blob.state),
        ),
        [{"blob": path, "lowered_by": size} for path, size in sorted(per_blob.items())],
    )
    return sum(per_blob.values())


def forget_superseded(conn: Connection, path: str, now: datetime) -> None:
    """The blob is deleted from the store: compaction's old copies in it are collected (a GCS
    soft delete may keep them a while; reports say until when). Records collected more than
    90 days ago (the longest GCS soft delete window) are dropped."""
    conn.execute(
        update(SupersededRange)
        .where(SupersededRange.blob_path == path, SupersededRange.collected_at.is_(None))
        .values(collected_at=now)
    )
    conn.execute(
        delete(SupersededRange).where(
            SupersededRange.collected_at < now - timedelta(days=SUPERSEDED_KEPT_DAYS)
        )
    )


def recently_superseded(conn: Connection, since: datetime) -> set[str]:
    """Source blobs compaction superseded a range of after `since`: readers that listed the
    old rows just before the repoint may still fetch from them, so GC waits its grace."""
    return set(
        conn.execute(
            select(SupersededRange.blob_path).where(SupersededRange.created_at > since).distinct()
        ).scalars()
    )


def record_event(
    catalog: Catalog, op: str, *, kind: str, at: datetime, details: Mapping[str, Any]
) -> None:
    """Append one audit event by vault-store itself, in its own transaction."""
    with catalog.transaction(op) as conn:
        audit.append(conn, kind=kind, actor="vault-store", at=at, details=details)


def record_uploaded(
    conn: Connection, blob: BlobRecord, *, live_bytes: int, compacted: bool = False
) -> None:
    """Turn the blob's pending intent into its record, live (dead if it holds no live byte), or
    with no intent, add one.

    An intent GC already claimed (state deleted) means the object may be gone: the flush must
    fail rather than record rows pointing at it.
    """
    path = blob.path
    values = {
        "path": path,
        "size": blob.size,
        "frame_count": blob.frame_count,
        "live_bytes": live_bytes,
        "retention_days": blob.retention_days,
        "created_at": blob.created_at,
        "expires_at": blob.expires_at,
        "state": (BlobState.LIVE if live_bytes else BlobState.DEAD).value,
        "compacted": compacted,
    }
    # One statement, whichever case: the row inserted (no intent), or the pending intent
    # updated; a row in any other state is left alone, and the count of rows written is 0.
    # (Counted rather than RETURNING, which SQLite has only since 3.35.)
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    recorded = conn.execute(
        dialect_insert(Blob)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[Blob.path],
            set_={key: value for key, value in values.items() if key != "path"},
            where=Blob.state == BlobState.PENDING.value,
        )
    ).rowcount
    if not recorded:
        raise BlobIntentLost(path)


class BlobIntentLost(Exception):
    """The blob's intent was collected by GC before its rows were recorded."""

    def __init__(self, path: str) -> None:
        super().__init__(f"blob {path} was collected as an orphan before its rows were recorded")
