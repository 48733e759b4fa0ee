"""Deletions: their requests, tombstones, chunked row deletion, completion and overwrite jobs."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, text, update

from vault_store.catalog import audit
from vault_store.catalog.blobs import lower_live_bytes
from vault_store.catalog.compaction import record_superseded_overwrites
from vault_store.catalog.models import (
    Deletion,
    OverwriteJob,
    RecordingByteRange,
    Replay,
    ReplaySubject,
    Tombstone,
)
from vault_store.catalog.partitions import (
    OverwriteJobs,
    ReplayWalk,
    delete_replays_rows,
    delete_rows,
    redone_if_a_partition_went,
)
from vault_store.catalog.records import (
    DeletedRows,
    DeletionStatus,
    OverwriteJobRecord,
    Scope,
    Status,
    as_utc,
)
from vault_store.errors import CorruptData, InvalidInput

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from vault_store.catalog.catalog import Catalog


# Finishing counts in a row that may find rows a full, empty sweep left (see _empty_sweeps).
_EMPTY_SWEEPS_MAX = 2


class DeletionRepository:
    """The deletion, tombstone and overwrite-job tables, and the rows a deletion removes."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        # Per running deletion, where its replay walk has got to (a hint kept in memory).
        self._walks: dict[str, ReplayWalk] = {}
        # Per running deletion, how many finishing counts in a row found rows right after a
        # chunk that searched every row of the target (the general path) and deleted none. One
        # can be a row that slipped in; at the second, deleting again cannot help, and finish
        # raises rather than a caller looping on those rows for ever.
        self._empty_sweeps: dict[str, int] = {}
        self._walks_lock = threading.Lock()

    def record(
        self,
        deletion_id: str,
        scope: Scope,
        project_id: int,
        *,
        requested_by: str,
        reason: str,
        replay_id: str | None,
        subject_hash: bytes | None,
        overwrite: bool,
        now: datetime,
    ) -> str:
        """Record a deletion, its tombstones and its audit event in one transaction; returns
        its id. A deletion already recorded under `deletion_id` is not recorded again."""
        with self._catalog.transaction("shred") as conn:
            if conn.execute(select(Deletion.id).where(Deletion.id == deletion_id)).first():
                return deletion_id
            # Wait for flushes of this project in progress; later ones will see the tombstone.
            self._catalog.lock_projects(conn, {project_id}, shared=False)
            previous = _previous_deletion(conn, scope, project_id, replay_id)
            replays = _target_replays(conn, scope, project_id, replay_id, subject_hash)
            target = (
                replay_id
                if scope is Scope.REPLAY
                else subject_hash.hex()
                if scope is Scope.USER and subject_hash is not None
                else None
            )
            if scope is Scope.PROJECT:
                replays_deleted = conn.execute(
                    select(func.count()).select_from(
                        select(RecordingByteRange.replay_id)
                        .where(RecordingByteRange.project_id == project_id)
                        .distinct()
                        .subquery()
                    )
                ).scalar_one()
            elif scope is Scope.REPLAY:
                replays_deleted = int(_holds_rows(conn, project_id, replays))
            else:
                replays_deleted = len(replays)
            # Nothing stored for the target: the request and this search are the record. The
            # tombstone is written all the same: segments of the replay may still be in a
            # worker's buffer or on the queue, and they must be dropped, not stored after the
            # answer "nothing held".
            held = replays_deleted > 0
            status = Status.PENDING if held else Status.NOTHING_HELD
            conn.execute(
                insert(Deletion).values(
                    id=deletion_id,
                    scope=scope.value,
                    project_id=project_id,
                    target=target,
                    requested_by=requested_by,
                    reason=reason,
                    requested_at=now,
                    status=status.value,
                    rows_deleted=0,
                    bytes_shredded=0,
                    replays_deleted=replays_deleted,
                    overwrite_requested=overwrite,
                    completed_at=None if held else now,
                    verified_rows_left=None if held else 0,
                    verified_at=None if held else now,
                    previous_deletion_id=previous,
                )
            )
            tombstones = [(project_id, None)] if scope is Scope.PROJECT else replays
            if tombstones:
                conn.execute(
                    insert(Tombstone),
                    [
                        {
                            "project_id": p,
                            "replay_id": r,
                            "deletion_id": deletion_id,
                            "created_at": now,
                        }
                        for p, r in tombstones
                    ],
                )
            audit.append(
                conn,
                kind="deletion.requested",
                actor=requested_by,
                at=now,
                details={
                    "deletion_id": deletion_id,
                    "scope": scope.value,
                    "project_id": project_id,
                    "target": target,
                    "reason": reason,
                    "overwrite": overwrite,
                    "status": status.value,
                    "replays_deleted": replays_deleted,
                    "previous_deletion_id": previous,
                },
            )
        return deletion_id

    def status(self, deletion_id: str) -> DeletionStatus:
        """The deletion's current state; InvalidInput if there is none."""
        with self._catalog.connection("shred") as conn:
            row = conn.execute(select(Deletion).where(Deletion.id == deletion_id)).one_or_none()
        if row is None:
            raise InvalidInput("deletion_id", f"no deletion {deletion_id!r}")
        return _status(row)

    def project_rows(self, project_id: int) -> int:
        """How many range rows a project has (what deleting it will remove)."""
        with self._catalog.connection("delete") as conn:
            count: int = conn.execute(
                select(func.count())
                .select_from(RecordingByteRange)
                .where(RecordingByteRange.project_id == project_id)
            ).scalar_one()
        return count

    def delete_chunk(self, deletion: DeletionStatus, limit: int, *, now: datetime) -> int:
        """Delete up to `limit` of the target's rows in one transaction: record their ranges
        for the overwrite if asked, lower their blobs' live bytes, count them. Returns how
        many (0: nothing left). A chunk that named a partition retention dropped meanwhile is
        redone once, with the partitions read anew (its transaction was rolled back whole)."""
        return redone_if_a_partition_went(
            "shred", lambda: self._delete_chunk(deletion, limit, now=now)
        )

    def _delete_chunk(self, deletion: DeletionStatus, limit: int, *, now: datetime) -> int:
        with self._catalog.transaction("shred") as conn:
            # Same transaction as the delete (the same statement on PostgreSQL): the ranges are
            # on record for the overwrite exactly when the rows (the only other record of where
            # the ciphertext lies) are gone.
            jobs = OverwriteJobs(deletion.id, now) if deletion.overwrite_requested else None
            chunk, swept = self._delete_target_rows(conn, deletion, limit, jobs)
            with self._walks_lock:
                if swept and not chunk.rows:
                    self._empty_sweeps.setdefault(deletion.id, 0)
                else:
                    self._empty_sweeps.pop(deletion.id, None)
            if not chunk.rows:
                return 0
            shredded = lower_live_bytes(conn, chunk.bytes_per_blob)
            conn.execute(
                update(Deletion)
                .where(Deletion.id == deletion.id)
                .values(
                    status=Status.RUNNING.value,
                    rows_deleted=Deletion.rows_deleted + chunk.rows,
                    bytes_shredded=Deletion.bytes_shredded + shredded,
                )
            )
        return chunk.rows

    def _delete_target_rows(
        self,
        conn: Connection,
        deletion: DeletionStatus,
        limit: int,
        jobs: OverwriteJobs | None,
    ) -> tuple[DeletedRows, bool]:
        """Up to `limit` of the target's rows, deleted: on PostgreSQL replay by replay (see
        delete_replays_rows), then any row no replay row leads to; on SQLite by rowid. Also
        whether every row of the target was searched (the general path)."""
        if conn.dialect.name != "postgresql":
            return delete_rows(conn, _target(deletion), limit, jobs=jobs), True
        with self._walks_lock:
            walk = self._walks.setdefault(deletion.id, ReplayWalk())
        replays, params = "", {}
        if deletion.scope is not Scope.PROJECT:
            replays = (
                "r.replay_id IN (SELECT replay_id FROM tombstone "
                "WHERE deletion_id = :deletion AND project_id = :project)"
            )
            params = {"deletion": deletion.id}
        days = self._catalog.partition_days
        chunk = delete_replays_rows(
            conn, deletion.project_id, replays, params, limit, walk, days, jobs=jobs
        )
        if not chunk.rows and walk.unreached:
            # Rows the walk cannot reach (none, unless a replay row went missing), which the
            # finishing count found: the general path, which scans the target's index entries in
            # every partition, dead ones included. Not before that count has found some: at
            # 147 partitions the scan cost as much as the count (docs/scaling.md).
            return delete_rows(conn, _target(deletion), limit, jobs=jobs), True
        return chunk, False

    def finish(self, deletion: DeletionStatus, *, now: datetime) -> DeletionStatus:
        """Mark the deletion done (or waiting for its overwrite) and forget the target's replays
        and subjects, audited, in one transaction that first counts the target's key-bearing rows
        under the project lock: only if it finds none. Otherwise the status is returned unchanged
        (still running) and the caller deletes again; CorruptData if a delete that searched every
        row of the target found none of those the count finds (the deletion stays open)."""
        with self._catalog.transaction("shred") as conn:
            # Flushes of this project in progress commit first (PostgreSQL; SQLite holds its write
            # lock already): the count below then sees every row that could ever land.
            self._catalog.lock_projects(conn, {deletion.project_id}, shared=False)
            left = _rows_left(conn, deletion)
            with self._walks_lock:
                sweeps = self._empty_sweeps.get(deletion.id)
                if left and sweeps is not None:
                    self._empty_sweeps[deletion.id] = sweeps = sweeps + 1
            if left and sweeps is not None and sweeps >= _EMPTY_SWEEPS_MAX:
                # No flush adds rows to a tombstoned target, so the delete and the count
                # disagree about the same rows (a trigger, a rule, rows edited by hand): an
                # operator must look. Never reported done, never looped on.
                raise CorruptData(
                    f"deletion {deletion.id}: {left} rows of its target remain that its delete "
                    "does not remove; it stays open"
                )
            if left:
                # Not done: rows of the target remain (they are deleted on the next round, by the
                # general path if the walk cannot reach them).
                with self._walks_lock:
                    self._walks.setdefault(deletion.id, ReplayWalk()).unreached = True
                return _status(
                    conn.execute(select(Deletion).where(Deletion.id == deletion.id)).one()
                )
            tombstoned = select(Tombstone.replay_id).where(Tombstone.deletion_id == deletion.id)
            subjects = delete(ReplaySubject).where(ReplaySubject.project_id == deletion.project_id)
            replays = delete(Replay).where(Replay.project_id == deletion.project_id)
            if deletion.scope is not Scope.PROJECT:
                subjects = subjects.where(ReplaySubject.replay_id.in_(tombstoned))
                replays = replays.where(Replay.replay_id.in_(tombstoned))
            conn.execute(subjects)
            conn.execute(replays)
            if deletion.overwrite_requested:
                # Copies compaction left in source blobs not yet collected are zeroed too.
                record_superseded_overwrites(conn, deletion, now=now)
            pending = _pending_overwrites(conn, deletion.id)
            final = Status.OVERWRITE_PENDING if pending else Status.DONE
            conn.execute(
                update(Deletion)
                .where(Deletion.id == deletion.id)
                .values(
                    status=final.value,
                    completed_at=now,
                    verified_rows_left=0,
                    verified_at=now,
                    # Asked for, and nothing left to zero (none recorded, or already zeroed).
                    overwrite_done_at=now if deletion.overwrite_requested and not pending else None,
                )
            )
            current = _status(
                conn.execute(select(Deletion).where(Deletion.id == deletion.id)).one()
            )
            audit.append(
                conn,
                kind="deletion.completed",
                actor="vault-store",
                at=now,
                details={
                    "deletion_id": deletion.id,
                    "status": final.value,
                    "rows_deleted": current.rows_deleted,
                    "bytes_shredded": current.bytes_shredded,
                    "replays_deleted": current.replays_deleted,
                    "verified_rows_left": 0,
                    "overwrite_ranges_pending": pending,
                },
            )
        with self._walks_lock:
            self._walks.pop(deletion.id, None)
            self._empty_sweeps.pop(deletion.id, None)
        return current

    def pending_overwrites(self, *, deletion_id: str | None = None) -> list[OverwriteJobRecord]:
        """Ranges not yet zeroed (of every deletion, or of one), by blob and offset."""
        query = select(
            OverwriteJob.id,
            OverwriteJob.deletion_id,
            OverwriteJob.blob_path,
            OverwriteJob.start,
            OverwriteJob.stop,
        ).where(OverwriteJob.done_at.is_(None))
        if deletion_id is not None:
            query = query.where(OverwriteJob.deletion_id == deletion_id)
        with self._catalog.connection("overwrite") as conn:
            rows = conn.execute(query.order_by(OverwriteJob.blob_path, OverwriteJob.start)).all()
        return [OverwriteJobRecord(*row) for row in rows]

    def record_overwrite(
        self,
        path: str,
        jobs: list[OverwriteJobRecord],
        ranges: list[tuple[int, int]],
        *,
        blob_size: int,
        rewritten: bool,
        now: datetime,
    ) -> None:
        """Mark a blob's jobs done and audit it, finishing every deletion that was waiting only
        for these ranges, in one transaction."""
        deletion_ids = sorted({job.deletion_id for job in jobs})
        with self._catalog.transaction("overwrite") as conn:
            conn.execute(
                update(OverwriteJob)
                .where(OverwriteJob.id.in_([job.id for job in jobs]))
                .values(done_at=now)
            )
            audit.append(
                conn,
                kind="overwrite.blob",
                actor="vault-store",
                at=now,
                details={
                    "blob_path": path,
                    "ranges": len(ranges),
                    "bytes_zeroed": sum(stop - start for start, stop in ranges),
                    "blob_size": blob_size,
                    "rewritten": rewritten,
                    "deletion_ids": deletion_ids,
                },
            )
            for deletion_id in deletion_ids:
                if _pending_overwrites(conn, deletion_id):
                    continue
                # Only a deletion whose rows are all gone can be finished here; one still deleting
                # chunks records more ranges and finishes itself (finish above).
                finished = conn.execute(
                    update(Deletion)
                    .where(
                        Deletion.id == deletion_id,
                        Deletion.status == Status.OVERWRITE_PENDING.value,
                    )
                    .values(overwrite_done_at=now, status=Status.DONE.value)
                ).rowcount
                if finished:
                    audit.append(
                        conn,
                        kind="deletion.overwritten",
                        actor="vault-store",
                        at=now,
                        details={"deletion_id": deletion_id},
                    )


def _previous_deletion(
    conn: Connection, scope: Scope, project_id: int, replay_id: str | None
) -> str | None:
    """The earlier deletion that already took this replay or project, if any."""
    if scope is Scope.USER:
        return None
    query = select(Tombstone.deletion_id).where(Tombstone.project_id == project_id)
    if scope is Scope.REPLAY:
        query = query.where((Tombstone.replay_id == replay_id) | Tombstone.replay_id.is_(None))
    else:
        query = query.where(Tombstone.replay_id.is_(None))
    found: str | None = conn.execute(query.order_by(Tombstone.id).limit(1)).scalar_one_or_none()
    return found


def _holds_rows(conn: Connection, project_id: int, replays: list[tuple[int, str | None]]) -> bool:
    """Whether any of these replays has a range row: first in the partition its replay row
    names (PostgreSQL), then, if none is found there, in every partition.

    The answer decides whether the deletion runs at all, so it never rests on the replay table
    alone: a row that table does not lead to (a replay row lost, a row moved by hand) is still
    found by the second search. The first spares the common request, a replay that has rows,
    a probe of every partition: 7.5 of a replay shred's 50 ms at 147 partitions
    (docs/benchmarks.md, seventh pass).
    """
    names = [replay for _, replay in replays if replay is not None]
    if conn.dialect.name == "postgresql" and names:
        buckets = conn.execute(
            select(Replay.expiry_bucket)
            .where(Replay.project_id == project_id, Replay.replay_id.in_(names))
            .distinct()
        ).scalars()
        for bucket in buckets:
            # The bucket as a constant: PostgreSQL plans this one partition only.
            in_its_partition = conn.execute(
                select(RecordingByteRange.segment_id)
                .where(
                    RecordingByteRange.project_id == project_id,
                    RecordingByteRange.replay_id.in_(names),
                    RecordingByteRange.expiry_bucket == bucket,
                )
                .limit(1)
            ).first()
            if in_its_partition is not None:
                return True
    found = conn.execute(
        select(RecordingByteRange.segment_id)
        .where(
            RecordingByteRange.project_id == project_id,
            RecordingByteRange.replay_id.in_(names),
        )
        .limit(1)
    ).first()
    return found is not None


def _target_replays(
    conn: Connection,
    scope: Scope,
    project_id: int,
    replay_id: str | None,
    subject_hash: bytes | None,
) -> list[tuple[int, str | None]]:
    """The replays to tombstone: the one named, the user's (from the subject index), or none
    (a project gets one tombstone for all)."""
    if scope is Scope.REPLAY and replay_id is not None:
        return [(project_id, replay_id)]
    if scope is Scope.USER and subject_hash is not None:
        found = conn.execute(
            select(ReplaySubject.replay_id)
            .where(
                ReplaySubject.project_id == project_id,
                ReplaySubject.subject_hash == subject_hash,
            )
            .distinct()
        ).scalars()
        return [(project_id, replay) for replay in sorted(found)]
    return []


def _target(deletion: DeletionStatus) -> ColumnElement[bool]:
    """The range rows a deletion removes: its project's, or its tombstoned replays'."""
    rbr = RecordingByteRange
    if deletion.scope is Scope.PROJECT:
        return rbr.project_id == deletion.project_id
    tombstoned = select(Tombstone.replay_id).where(
        Tombstone.deletion_id == deletion.id, Tombstone.project_id == deletion.project_id
    )
    return and_(rbr.project_id == deletion.project_id, rbr.replay_id.in_(tombstoned))


def _rows_left(conn: Connection, deletion: DeletionStatus) -> int:
    """How many of the target's rows are left, counted in every partition: on PostgreSQL by
    the catalog's function deletion_rows_left (migration 0006), the same count, whose plan the
    server keeps for the session instead of planning 147 partitions at every deletion."""
    if conn.dialect.name == "postgresql":
        left: int = conn.execute(
            text("SELECT deletion_rows_left(:project, :deletion, :whole_project)"),
            {
                "project": deletion.project_id,
                "deletion": deletion.id,
                "whole_project": deletion.scope is Scope.PROJECT,
            },
        ).scalar_one()
        return left
    counted: int = conn.execute(
        select(func.count()).select_from(RecordingByteRange).where(_target(deletion))
    ).scalar_one()
    return counted


def _pending_overwrites(conn: Connection, deletion_id: str) -> int:
    pending: int = conn.execute(
        select(func.count())
        .select_from(OverwriteJob)
        .where(OverwriteJob.deletion_id == deletion_id, OverwriteJob.done_at.is_(None))
    ).scalar_one()
    return pending


def _status(row: Any) -> DeletionStatus:
    def utc(moment: datetime | None) -> datetime | None:
        return None if moment is None else as_utc(moment)

    return DeletionStatus(
        id=row.id,
        scope=Scope(row.scope),
        project_id=row.project_id,
        target=row.target,
        requested_by=row.requested_by,
        reason=row.reason,
        requested_at=as_utc(row.requested_at),
        status=Status(row.status),
        completed_at=utc(row.completed_at),
        rows_deleted=row.rows_deleted,
        bytes_shredded=row.bytes_shredded,
        replays_deleted=row.replays_deleted,
        overwrite_requested=row.overwrite_requested,
        overwrite_done_at=utc(row.overwrite_done_at),
        verified_rows_left=row.verified_rows_left,
        verified_at=utc(row.verified_at),
        previous_deletion_id=row.previous_deletion_id,
    )
