"""Compaction in the catalog: finished replays, repointing their rows, the copies superseded.

A compaction copies a finished replay's frames unchanged into a compacted blob and then, in one
transaction taken under the same project locks a deletion takes, repoints the rows that still
point where they did, records where each frame came from (`superseded_range`, so a forced
overwrite zeroes that copy too and reports count it until its blob is gone), moves the live bytes
from the sources to the new blob and turns the blob's pending intent into its record. A replay
tombstoned meanwhile makes the whole commit refuse (`CompactionRaced`): the caller then deletes
the new object, so a shred racing a compaction leaves no row and no new copy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)

from vault_store.catalog import audit
from vault_store.catalog.blobs import (
    BlobIntentLost,
    bytes_per_blob,
    lower_live_bytes,
    record_uploaded,
)
from vault_store.catalog.catalog import _RANGE_COLUMNS
from vault_store.catalog.models import (
    Blob,
    OverwriteJob,
    RecordingByteRange,
    Replay,
    SupersededRange,
    Tombstone,
)
from vault_store.catalog.records import (
    BlobRecord,
    BlobState,
    ByteRange,
    DeletionStatus,
    RangeRecord,
    Scope,
    as_utc,
)
from vault_store.errors import BackendUnavailable

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog

# Columns of a range row as compaction reads them (the wrapped key is read only to be kept:
# compaction never writes a key column).
_ROW_COLUMNS = tuple(name for name in _RANGE_COLUMNS if name != "expiry_bucket")


@dataclass(frozen=True, slots=True)
class FinishedReplay:
    """A replay compaction may take: its retention class, rows, bytes and expiry span."""

    project_id: int
    replay_id: str
    retention_days: int
    rows: int
    bytes: int
    first_expiry: datetime
    last_expiry: datetime


@dataclass(frozen=True, slots=True)
class Move:
    """One frame copied: its row as read, and where the copy lies in the compacted blob."""

    row: RangeRecord
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """One compacted blob committed: rows repointed, their bytes, replays moved."""

    rows_moved: int
    bytes_moved: int
    replays_moved: int
    rows_missed: int


@dataclass(frozen=True, slots=True)
class CompactionStats:
    """Compacted blobs now, and the superseded copies still waiting for GC."""

    compacted_blobs: int
    compacted_bytes: int
    superseded_ranges: int
    superseded_bytes: int
    blobs_waiting_for_gc: int


@dataclass(frozen=True, slots=True)
class SupersededCopies:
    """Copies compaction left of a deletion's target (for its report)."""

    in_store: int
    bytes_in_store: int
    blob_expiry: datetime | None
    collected: int
    last_collected_at: datetime | None


class CompactionRaced(Exception):
    """A replay of the compaction was deleted (tombstoned) while its frames were copied."""

    def __init__(self, replays: Collection[tuple[int, str]]) -> None:
        super().__init__(f"{len(replays)} replay(s) were deleted during the compaction")
        self.replays = frozenset(replays)


class CompactionIntentLost(BackendUnavailable):
    """GC took the compacted blob's intent (the copy outlasted its grace): nothing was written,
    and the object, if uploaded after GC looked, is the caller's to delete."""


class CompactionRepository:
    """What compaction reads and writes in the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def finished(
        self, *, idle_before: datetime, started_before: datetime, limit: int
    ) -> list[FinishedReplay]:
        """Replays with a row outside a compacted blob whose last row was written before
        `idle_before` (idle) or whose first row before `started_before` (past the longest
        replay), of no deleted replay or project, oldest first.

        A replay whose rows all lie in one compacted blob is done; one with a late segment in a
        flushed blob is found again (and compacted whole again).
        """
        rbr = RecordingByteRange
        loose = (
            select(rbr.project_id, rbr.replay_id)
            .join(Blob, Blob.path == rbr.blob_path)
            .where(Blob.compacted.is_(False))
            .distinct()
            .subquery()
        )
        deleted = exists().where(
            Tombstone.project_id == rbr.project_id,
            or_(Tombstone.replay_id == rbr.replay_id, Tombstone.replay_id.is_(None)),
        )
        query = (
            select(
                rbr.project_id,
                rbr.replay_id,
                func.min(Blob.retention_days),
                func.max(Blob.retention_days),
                func.count(),
                func.sum(rbr.stop - rbr.start),
                func.min(rbr.expires_at),
                func.max(rbr.expires_at),
            )
            .join(Blob, Blob.path == rbr.blob_path)
            .join(
                loose,
                and_(loose.c.project_id == rbr.project_id, loose.c.replay_id == rbr.replay_id),
            )
            .where(~deleted)
            .group_by(rbr.project_id, rbr.replay_id)
            .having(
                or_(
                    func.max(rbr.created_at) <= idle_before,
                    func.min(rbr.created_at) <= started_before,
                )
            )
            .order_by(func.min(rbr.created_at), rbr.project_id, rbr.replay_id)
            .limit(limit)
        )
        with self._catalog.connection("compact") as conn:
            rows = conn.execute(query).all()
        found = []
        for project, replay, low_days, high_days, count, size, first, last in rows:
            if low_days != high_days:
                continue  # rows of two retention classes: a blob holds one class
            found.append(
                FinishedReplay(
                    project_id=int(project),
                    replay_id=str(replay),
                    retention_days=int(low_days),
                    rows=int(count),
                    bytes=int(size or 0),
                    first_expiry=as_utc(first),
                    last_expiry=as_utc(last),
                )
            )
        return found

    def rows(self, replays: Sequence[tuple[int, str]]) -> list[RangeRecord]:
        """Every row of these replays, replay by replay in the order given, each in (segment,
        part) order: the order of the compacted blob."""
        if not replays:
            return []
        rbr = RecordingByteRange
        columns = [getattr(rbr, name) for name in _ROW_COLUMNS]
        found: dict[tuple[int, str], list[RangeRecord]] = {pair: [] for pair in replays}
        with self._catalog.connection("compact") as conn:
            for first in range(0, len(replays), 500):
                chunk = list(replays[first : first + 500])
                result = conn.execute(
                    select(*columns)
                    .where(tuple_(rbr.project_id, rbr.replay_id).in_(chunk))
                    .order_by(rbr.project_id, rbr.replay_id, rbr.segment_id, rbr.part)
                ).all()
                for row in result:
                    record = _record(row)
                    found[(record.project_id, record.replay_id)].append(record)
        return [row for pair in replays for row in found[pair]]

    def commit(self, blob: BlobRecord, moves: Sequence[Move], *, now: datetime) -> CommitOutcome:
        """Repoint the rows that still point at their source range to the compacted blob, in one
        transaction with the blob's record, the superseded ranges and the live bytes.

        Raises CompactionRaced (nothing written) if a replay of `moves` was deleted meanwhile,
        and CompactionIntentLost if GC took the blob's intent (the copy took longer than the
        grace period): the caller deletes the object either way. Any other failure leaves the
        intent pending for GC: the object must not be deleted then, since a commit whose answer
        was lost may have succeeded.
        """
        replays = sorted({(m.row.project_id, m.row.replay_id) for m in moves})
        with self._catalog.transaction("compact") as conn:
            # The lock a flush takes (a deletion request takes it exclusively): a tombstone
            # written before this point is seen below; one written after waits for this commit,
            # and its shred then deletes the rows at their new place (and, with an overwrite,
            # zeroes the superseded ranges recorded here).
            self._catalog.lock_projects(conn, {project for project, _ in replays}, shared=True)
            raced = self._catalog._tombstoned(conn, replays)
            if raced:
                raise CompactionRaced(raced)
            buckets = _buckets(conn, replays)
            moved: list[Move] = []
            for move in moves:
                row = move.row
                bucket = buckets.get((row.project_id, row.replay_id))
                if bucket is None:
                    continue
                # Only a row still where it was read: one expired, shredded or moved by
                # another compaction meanwhile stays as it is (its copy here is dead bytes).
                changed = conn.execute(
                    update(RecordingByteRange)
                    .where(
                        RecordingByteRange.project_id == row.project_id,
                        RecordingByteRange.replay_id == row.replay_id,
                        RecordingByteRange.segment_id == row.segment_id,
                        RecordingByteRange.part == row.part,
                        RecordingByteRange.expiry_bucket == bucket,
                        RecordingByteRange.blob_path == row.blob_path,
                        RecordingByteRange.start == row.start,
                        RecordingByteRange.stop == row.stop,
                    )
                    .values(blob_path=blob.path, start=move.start, stop=move.stop)
                ).rowcount
                if changed:
                    moved.append(move)
            if moved:
                conn.execute(
                    insert(SupersededRange),
                    [
                        {
                            "project_id": m.row.project_id,
                            "replay_id": m.row.replay_id,
                            "blob_path": m.row.blob_path,
                            "start": m.row.start,
                            "stop": m.row.stop,
                            "compacted_into": blob.path,
                            "created_at": now,
                        }
                        for m in moved
                    ],
                )
            lower_live_bytes(
                conn,
                bytes_per_blob(ByteRange(m.row.blob_path, m.row.start, m.row.stop) for m in moved),
            )
            live = sum(m.stop - m.start for m in moved)
            try:
                record_uploaded(conn, blob, live_bytes=live, compacted=True)
            except BlobIntentLost as exc:
                raise CompactionIntentLost(str(exc), backend="catalog", op="compact") from None
            outcome = CommitOutcome(
                rows_moved=len(moved),
                bytes_moved=live,
                replays_moved=len({(m.row.project_id, m.row.replay_id) for m in moved}),
                rows_missed=len(moves) - len(moved),
            )
            audit.append(
                conn,
                kind="compaction.blob",
                actor="vault-store",
                at=now,
                details={
                    "blob_path": blob.path,
                    "rows_moved": outcome.rows_moved,
                    "bytes_moved": outcome.bytes_moved,
                    "replays_moved": outcome.replays_moved,
                    "rows_missed": outcome.rows_missed,
                    "expires_at": blob.expires_at.isoformat(),
                },
            )
        return outcome

    def abandon(self, path: str) -> None:
        """Mark a compacted blob's intent deleted once its object is gone (never committed)."""
        with self._catalog.transaction("compact") as conn:
            conn.execute(
                update(Blob)
                .where(Blob.path == path, Blob.state == BlobState.PENDING.value)
                .values(state=BlobState.DELETED.value)
            )

    def stats(self) -> CompactionStats:
        """Compacted blobs in the store, and the superseded copies not yet collected."""
        with self._catalog.connection("stats") as conn:
            blobs, size = conn.execute(
                select(func.count(), func.coalesce(func.sum(Blob.size), 0)).where(
                    Blob.compacted.is_(True),
                    Blob.state.in_((BlobState.LIVE.value, BlobState.DEAD.value)),
                )
            ).one()
            ranges, superseded, waiting = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(SupersededRange.stop - SupersededRange.start), 0),
                    func.count(func.distinct(SupersededRange.blob_path)),
                ).where(SupersededRange.collected_at.is_(None))
            ).one()
        return CompactionStats(
            compacted_blobs=int(blobs),
            compacted_bytes=int(size),
            superseded_ranges=int(ranges),
            superseded_bytes=int(superseded),
            blobs_waiting_for_gc=int(waiting),
        )

    def superseded_copies(
        self, project_id: int, scope: str, replays: Collection[str]
    ) -> SupersededCopies:
        """For a report: copies compaction left of a deletion's target: those still in a
        source blob (they go at GC, at the latest when their blob expires), and those whose
        blob was deleted (a GCS soft delete may keep them for its window)."""
        sr = SupersededRange
        target = sr.project_id == project_id
        if scope != Scope.PROJECT.value:
            target = and_(target, sr.replay_id.in_(sorted(replays)))
        with self._catalog.connection("report") as conn:
            held, size, latest = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(sr.stop - sr.start), 0),
                    func.max(Blob.expires_at),
                )
                .join(Blob, Blob.path == sr.blob_path)
                .where(target, sr.collected_at.is_(None))
            ).one()
            collected, last_collected = conn.execute(
                select(func.count(), func.max(sr.collected_at)).where(
                    target, sr.collected_at.is_not(None)
                )
            ).one()
        return SupersededCopies(
            in_store=int(held),
            bytes_in_store=int(size),
            blob_expiry=as_utc(latest) if latest is not None else None,
            collected=int(collected),
            last_collected_at=as_utc(last_collected) if last_collected is not None else None,
        )


def record_superseded_overwrites(
    conn: Connection, deletion: DeletionStatus, *, now: datetime
) -> int:
    """Record an overwrite job for every superseded copy of a deletion's target still in the
    store (not already recorded for it); how many. Called under the deletion's project lock,
    after its tombstone: no compaction of the target can commit after that."""
    sr = SupersededRange
    target = sr.project_id == deletion.project_id
    if deletion.scope is not Scope.PROJECT:
        tombstoned = select(Tombstone.replay_id).where(
            Tombstone.deletion_id == deletion.id, Tombstone.project_id == deletion.project_id
        )
        target = and_(target, sr.replay_id.in_(tombstoned))
    already = exists().where(
        OverwriteJob.deletion_id == deletion.id,
        OverwriteJob.blob_path == sr.blob_path,
        OverwriteJob.start == sr.start,
        OverwriteJob.stop == sr.stop,
    )
    live_blob = exists().where(Blob.path == sr.blob_path, Blob.state != BlobState.DELETED.value)
    source = select(
        literal(deletion.id),
        sr.blob_path,
        sr.start,
        sr.stop,
        literal(now, type_=OverwriteJob.created_at.type),
    ).where(target, ~already, live_blob)
    result = conn.execute(
        insert(OverwriteJob).from_select(
            ["deletion_id", "blob_path", "start", "stop", "created_at"], source
        )
    )
    return int(result.rowcount or 0)


def _buckets(conn: Connection, replays: Sequence[tuple[int, str]]) -> dict[tuple[int, str], date]:
    """Each replay's bucket (partition), so each update looks in one partition only."""
    found: dict[tuple[int, str], date] = {}
    for first in range(0, len(replays), 500):
        chunk = list(replays[first : first + 500])
        rows = conn.execute(
            select(Replay.project_id, Replay.replay_id, Replay.expiry_bucket).where(
                tuple_(Replay.project_id, Replay.replay_id).in_(chunk)
            )
        ).all()
        found.update({(int(p), str(r)): b for p, r, b in rows})
    return found


def _record(row: Any) -> RangeRecord:
    values: Mapping[str, Any] = dict(zip(_ROW_COLUMNS, row, strict=True))
    return RangeRecord(
        **{
            **values,
            "created_at": as_utc(values["created_at"]),
            "expires_at": as_utc(values["expires_at"]),
            "wrapped_dek": bytes(values["wrapped_dek"]),
            "key_check": bytes(values["key_check"]),
        }
    )
