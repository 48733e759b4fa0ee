"""Crypto-shredding: delete a replay's, a user's or a project's range rows (and so their keys).

A deletion is first recorded (deletion row, tombstones, audit event) in one transaction, so it
is durable and late segments are dropped from then on; then it runs in chunks, each one
transaction: record the ranges for a forced overwrite if asked, delete the rows (the wrapped
keys go with them), lower the blobs' live bytes, count. Running a deletion again continues where
it stopped. Blobs are never touched here.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.sql.util import ClauseAdapter

from vault_store.catalog import Catalog, audit
from vault_store.catalog.models import (
    Blob,
    Deletion,
    OverwriteJob,
    RecordingByteRange,
    Replay,
    ReplaySubject,
    Tombstone,
)
from vault_store.catalog.partitions import partitions
from vault_store.catalog.records import as_utc
from vault_store.errors import InvalidInput

DEFAULT_CHUNK_ROWS = 5000


class Scope(Enum):
    """What a deletion covers."""

    REPLAY = "replay"
    USER = "user"
    PROJECT = "project"


class Status(Enum):
    """Where a deletion is: recorded, deleting rows, waiting for its overwrite, or done."""

    PENDING = "pending"
    RUNNING = "running"
    OVERWRITE_PENDING = "overwrite_pending"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class DeletionStatus:
    """A deletion request and its progress."""

    id: str
    scope: str
    project_id: int
    target: str | None
    requested_by: str
    reason: str
    requested_at: datetime
    status: str
    completed_at: datetime | None
    rows_deleted: int
    bytes_shredded: int
    replays_deleted: int
    overwrite_requested: bool
    overwrite_done_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json and the API."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__)
        }


class Shredder:
    """Records and runs deletions on a catalog."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self._catalog = catalog
        self._chunk_rows = chunk_rows
        self._clock = clock

    def request(
        self,
        scope: Scope,
        project_id: int,
        *,
        requested_by: str,
        reason: str,
        replay_id: str | None = None,
        subject_hash: bytes | None = None,
        overwrite: bool = False,
        deletion_id: str | None = None,
    ) -> str:
        """Record a deletion and its tombstones; reads and late segments stop at once.

        With `deletion_id` (a retried task's idempotency key) a deletion already recorded under
        that id is not recorded again.
        """
        if not requested_by.strip() or not reason.strip():
            raise InvalidInput("--by/--reason", "a deletion needs who asked and why")
        deletion_id = deletion_id or uuid.uuid4().hex
        now = self._clock()
        with self._catalog.transaction("shred") as conn:
            if conn.execute(select(Deletion.id).where(Deletion.id == deletion_id)).first():
                return deletion_id
            # Wait for flushes of this project in progress; later ones will see the tombstone.
            self._catalog.lock_projects(conn, {project_id}, shared=False)
            replays = self._target_replays(conn, scope, project_id, replay_id, subject_hash)
            target = (
                replay_id
                if scope is Scope.REPLAY
                else subject_hash.hex()
                if scope is Scope.USER and subject_hash is not None
                else None
            )
            conn.execute(
                insert(Deletion).values(
                    id=deletion_id,
                    scope=scope.value,
                    project_id=project_id,
                    target=target,
                    requested_by=requested_by,
                    reason=reason,
                    requested_at=now,
                    status=Status.PENDING.value,
                    rows_deleted=0,
                    bytes_shredded=0,
                    replays_deleted=len(replays) if scope is not Scope.PROJECT else 0,
                    overwrite_requested=overwrite,
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
            if scope is Scope.PROJECT:
                count = conn.execute(
                    select(func.count()).select_from(
                        select(RecordingByteRange.replay_id)
                        .where(RecordingByteRange.project_id == project_id)
                        .distinct()
                        .subquery()
                    )
                ).scalar_one()
                conn.execute(
                    update(Deletion).where(Deletion.id == deletion_id).values(replays_deleted=count)
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
                },
            )
        return deletion_id

    def run(
        self,
        deletion_id: str,
        *,
        max_chunks: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> DeletionStatus:
        """Delete the target's rows chunk by chunk; idempotent, and resumable after any stop.

        `progress(rows_deleted_so_far, bytes_so_far)` is called after each chunk. With
        `max_chunks`, stops early (still RUNNING), as an interrupted run would.
        """
        status = self.status(deletion_id)
        if status.status in (Status.DONE.value, Status.OVERWRITE_PENDING.value):
            return status
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            with self._catalog.transaction("shred") as conn:
                deleted = self._delete_chunk(conn, status)
            chunks += 1
            if not deleted:
                return self._finish(status)
            if progress is not None:
                current = self.status(deletion_id)
                progress(current.rows_deleted, current.bytes_shredded)
        return self.status(deletion_id)

    def status(self, deletion_id: str) -> DeletionStatus:
        """The deletion's current row; InvalidInput if there is none."""
        with self._catalog.connection("shred") as conn:
            row = conn.execute(select(Deletion).where(Deletion.id == deletion_id)).one_or_none()
            if row is None:
                raise InvalidInput("deletion", f"no deletion {deletion_id!r}")
            return _status(row)

    def _target_replays(
        self,
        conn: Connection,
        scope: Scope,
        project_id: int,
        replay_id: str | None,
        subject_hash: bytes | None,
    ) -> list[tuple[int, str | None]]:
        if scope is Scope.REPLAY:
            if replay_id is None:
                raise InvalidInput("--replay", "a replay deletion needs a replay id")
            return [(project_id, replay_id)]
        if scope is Scope.USER:
            if subject_hash is None:
                raise InvalidInput("--user", "a user deletion needs a user identifier")
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

    def _delete_chunk(self, conn: Connection, status: DeletionStatus) -> int:
        """Delete one chunk of the target's rows; returns how many (0: nothing left)."""
        chunk = delete_rows(conn, self._target(status), self._chunk_rows)
        if not chunk:
            return 0
        if status.overwrite_requested:
            # Same transaction as the delete: the ranges are on record exactly when the rows
            # (the only other record of where the ciphertext lies) are gone.
            now = self._clock()
            conn.execute(
                insert(OverwriteJob),
                [
                    {
                        "deletion_id": status.id,
                        "blob_path": row.blob_path,
                        "start": row.start,
                        "stop": row.stop,
                        "created_at": now,
                    }
                    for row in chunk
                ],
            )
        shredded = lower_live_bytes(conn, chunk)
        conn.execute(
            update(Deletion)
            .where(Deletion.id == status.id)
            .values(
                status=Status.RUNNING.value,
                rows_deleted=Deletion.rows_deleted + len(chunk),
                bytes_shredded=Deletion.bytes_shredded + shredded,
            )
        )
        return len(chunk)

    def _target(self, status: DeletionStatus) -> ColumnElement[bool]:
        rbr = RecordingByteRange
        if status.scope == Scope.PROJECT.value:
            return rbr.project_id == status.project_id
        tombstoned = select(Tombstone.replay_id).where(
            Tombstone.deletion_id == status.id, Tombstone.project_id == status.project_id
        )
        return and_(rbr.project_id == status.project_id, rbr.replay_id.in_(tombstoned))

    def _finish(self, status: DeletionStatus) -> DeletionStatus:
        now = self._clock()
        with self._catalog.transaction("shred") as conn:
            subjects = delete(ReplaySubject).where(ReplaySubject.project_id == status.project_id)
            if status.scope != Scope.PROJECT.value:
                subjects = subjects.where(
                    ReplaySubject.replay_id.in_(
                        select(Tombstone.replay_id).where(Tombstone.deletion_id == status.id)
                    )
                )
            conn.execute(subjects)
            replays = delete(Replay).where(Replay.project_id == status.project_id)
            if status.scope != Scope.PROJECT.value:
                replays = replays.where(
                    Replay.replay_id.in_(
                        select(Tombstone.replay_id).where(Tombstone.deletion_id == status.id)
                    )
                )
            conn.execute(replays)
            pending = conn.execute(
                select(func.count())
                .select_from(OverwriteJob)
                .where(OverwriteJob.deletion_id == status.id, OverwriteJob.done_at.is_(None))
            ).scalar_one()
            final = Status.OVERWRITE_PENDING if pending else Status.DONE
            conn.execute(
                update(Deletion)
                .where(Deletion.id == status.id)
                .values(
                    status=final.value,
                    completed_at=now,
                    # Asked for, and nothing left to zero (none recorded, or already zeroed).
                    overwrite_done_at=now if status.overwrite_requested and not pending else None,
                )
            )
            current = _status(conn.execute(select(Deletion).where(Deletion.id == status.id)).one())
            audit.append(
                conn,
                kind="deletion.completed",
                actor="vault-store",
                at=now,
                details={
                    "deletion_id": status.id,
                    "rows_deleted": current.rows_deleted,
                    "bytes_shredded": current.bytes_shredded,
                    "replays_deleted": current.replays_deleted,
                    "overwrite_ranges_pending": pending,
                },
            )
        return current


def delete_rows(conn: Connection, where: ColumnElement[bool], limit: int) -> Sequence[Any]:
    """Delete up to `limit` range rows matching `where`; returns their blob_path, start, stop.

    By physical row id from an index-driven subquery: no list of keys travels back and forth,
    whatever the chunk size. On SQLite that is rowid, in one statement. On the partitioned
    PostgreSQL table it is ctid, one partition at a time: a ctid is unique only within its
    partition, and one statement over the parent would join every matching row of every
    partition against the chunk, a scan of the whole target per chunk.
    """
    rbr = RecordingByteRange
    if conn.dialect.name != "postgresql":
        row_id: ColumnElement[Any] = literal_column("rowid")
        victims = select(row_id).select_from(rbr).where(where).limit(limit)
        statement = (
            delete(rbr)
            .where(row_id.in_(victims.scalar_subquery()))
            .returning(rbr.blob_path, rbr.start, rbr.stop)
        )
        return conn.execute(statement).all()
    deleted: list[Any] = []
    for partition in partitions(conn):
        table = _partition_table(partition.name)
        # The same condition, on the partition's columns (subqueries on other tables untouched).
        local = ClauseAdapter(
            table,
            include_fn=lambda column: getattr(column, "table", None) is rbr.__table__,
            adapt_on_names=True,
        ).traverse(where)
        ctid: ColumnElement[Any] = literal_column("ctid")
        victims = select(ctid).select_from(table).where(local).limit(limit - len(deleted))
        statement = (
            delete(table)
            .where(ctid.in_(victims.scalar_subquery()))
            .returning(table.c.blob_path, table.c.start, table.c.stop)
        )
        deleted += conn.execute(statement).all()
        if len(deleted) >= limit:
            break
    return deleted


@functools.lru_cache(maxsize=4096)
def _partition_table(name: str) -> Table:
    """A lightweight Table naming one partition, with the range table's columns."""
    columns = [Column(c.name, c.type) for c in RecordingByteRange.__table__.columns]
    return Table(name, MetaData(), *columns)


def lower_live_bytes(conn: Connection, rows: Sequence[Any]) -> int:
    """Subtract deleted rows (with blob_path, start, stop) from their blobs' live bytes; a blob
    with nothing live left becomes dead. Returns the bytes subtracted."""
    per_blob: dict[str, int] = defaultdict(int)
    for row in rows:
        per_blob[row.blob_path] += row.stop - row.start
    for path, size in per_blob.items():
        remaining = Blob.live_bytes - size
        conn.execute(
            update(Blob)
            .where(Blob.path == path)
            .values(
                live_bytes=remaining,
                state=case((remaining <= 0, "dead"), else_=Blob.state),
            )
        )
    return sum(per_blob.values())


def _status(row: Any) -> DeletionStatus:
    def utc(moment: datetime | None) -> datetime | None:
        return None if moment is None else as_utc(moment)

    return DeletionStatus(
        id=row.id,
        scope=row.scope,
        project_id=row.project_id,
        target=row.target,
        requested_by=row.requested_by,
        reason=row.reason,
        requested_at=as_utc(row.requested_at),
        status=row.status,
        completed_at=utc(row.completed_at),
        rows_deleted=row.rows_deleted,
        bytes_shredded=row.bytes_shredded,
        replays_deleted=row.replays_deleted,
        overwrite_requested=row.overwrite_requested,
        overwrite_done_at=utc(row.overwrite_done_at),
    )
