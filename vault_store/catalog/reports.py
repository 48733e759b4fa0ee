"""What the compliance report reads: deletions in a period, what is left of them, storage."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, func, select

from vault_store.catalog import audit
from vault_store.catalog.models import Blob, Deletion, OverwriteJob, RecordingByteRange, Tombstone
from vault_store.catalog.records import BlobState, as_utc

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog


@dataclass(frozen=True, slots=True)
class ReportedDeletion:
    """A deletion request as recorded (times in UTC)."""

    id: str
    scope: str
    project_id: int
    target: str | None
    requested_by: str
    reason: str
    requested_at: datetime
    status: str
    completed_at: datetime | None
    overwrite_requested: bool
    overwrite_done_at: datetime | None
    rows_deleted: int | None
    bytes_shredded: int | None
    replays_deleted: int
    verified_rows_left: int | None = None
    verified_at: datetime | None = None
    previous_deletion_id: str | None = None
    # Covered fields whose row value differs from the audit chain (the chain's value is shown).
    audit_mismatches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeletionRemains:
    """What is still in the catalog of a deletion's target, counted now.

    `replays` are the target's replays known from the deletion itself: its replay, or for a
    user deletion its tombstones; none for a project (every replay of it is the target).
    """

    replays: tuple[str, ...]
    range_rows: int
    overwrites_pending: int


@dataclass(frozen=True, slots=True)
class RetentionStorage:
    """Blobs not yet deleted of one retention class, and their bytes."""

    retention_days: int
    blobs: int
    bytes_stored: int
    live_bytes: int


@dataclass(frozen=True, slots=True)
class BlobLifetime:
    """When a blob was written, when it expires, and its size."""

    created_at: datetime
    expires_at: datetime
    size: int


class ReportRepository:
    """The report's reads, each on its own connection."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def deletions(
        self, since: datetime, until: datetime, *, project_id: int | None = None
    ) -> list[ReportedDeletion]:
        """Deletions requested in [since, until), of one project if given, oldest first."""
        query = select(Deletion).where(
            Deletion.requested_at >= since, Deletion.requested_at < until
        )
        if project_id is not None:
            query = query.where(Deletion.project_id == project_id)
        with self._catalog.connection("report") as conn:
            rows = conn.execute(query.order_by(Deletion.requested_at)).all()
        return [_deletion(row) for row in rows]

    def chained_deletions(
        self, since: datetime, until: datetime, *, project_id: int | None = None
    ) -> list[ReportedDeletion]:
        """As `deletions`, but each field the audit chain covers has the chain's value, and the
        fields where the row differs are named (so a report prints only what the chain proves).
        Progress of an unfinished deletion is not in the chain: its rows and bytes are None."""
        rows = self.deletions(since, until, project_id=project_id)
        views = self._catalog.audit_trail.chained_deletions([row.id for row in rows])
        chained = []
        for row in rows:
            view = views.get(row.id, {})
            differ = tuple(audit.mismatches(row, view))
            values = {name: view[name] for name in audit.COVERED_FIELDS if name in view}
            if "status" not in view:  # unfinished as far as the chain knows
                values.update(rows_deleted=None, bytes_shredded=None)
            chained.append(replace(row, **values, audit_mismatches=differ))
        return chained

    def remains(self, deletion: ReportedDeletion) -> DeletionRemains:
        """Range rows left of the deletion's target, and its overwrite ranges not yet done.

        The target comes from the deletion row itself where it can (a replay's id; a project),
        so tampering with tombstones cannot make the count vacuously zero.
        """
        rbr = RecordingByteRange
        with self._catalog.connection("report") as conn:
            replays: list[str]
            if deletion.scope == "project":
                replays = []
                target = rbr.project_id == deletion.project_id
            elif deletion.scope == "replay":
                replays = [deletion.target] if deletion.target is not None else []
                target = and_(
                    rbr.project_id == deletion.project_id, rbr.replay_id == deletion.target
                )
            else:
                tombstoned = select(Tombstone.replay_id).where(Tombstone.deletion_id == deletion.id)
                replays = [r for r in conn.execute(tombstoned).scalars() if r is not None]
                target = and_(rbr.project_id == deletion.project_id, rbr.replay_id.in_(tombstoned))
            remaining = conn.execute(
                select(func.count()).select_from(rbr).where(target)
            ).scalar_one()
            pending = conn.execute(
                select(func.count())
                .select_from(OverwriteJob)
                .where(OverwriteJob.deletion_id == deletion.id, OverwriteJob.done_at.is_(None))
            ).scalar_one()
        return DeletionRemains(tuple(replays), int(remaining), int(pending))

    def storage_by_retention(self) -> list[RetentionStorage]:
        """Blobs not deleted, per retention class, shortest first."""
        with self._catalog.connection("report") as conn:
            rows = conn.execute(
                select(
                    Blob.retention_days,
                    func.count(),
                    func.coalesce(func.sum(Blob.size), 0),
                    func.coalesce(func.sum(Blob.live_bytes), 0),
                )
                .where(
                    Blob.state.in_((BlobState.LIVE.value, BlobState.DEAD.value))
                )  # not deleted, not a mere intent
                .group_by(Blob.retention_days)
                .order_by(Blob.retention_days)
            ).all()
        return [
            RetentionStorage(int(days), int(count), int(size), int(live))
            for days, count, size, live in rows
        ]

    def blob_lifetimes(self) -> list[BlobLifetime]:
        """Every blob's creation, expiry and size."""
        with self._catalog.connection("report") as conn:
            rows = conn.execute(select(Blob.created_at, Blob.expires_at, Blob.size)).all()
        return [
            BlobLifetime(as_utc(created), as_utc(expires), int(size))
            for created, expires, size in rows
        ]


def _deletion(row: Row[Any]) -> ReportedDeletion:
    return ReportedDeletion(
        id=row.id,
        scope=row.scope,
        project_id=row.project_id,
        target=row.target,
        requested_by=row.requested_by,
        reason=row.reason,
        requested_at=as_utc(row.requested_at),
        status=row.status,
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
        overwrite_requested=bool(row.overwrite_requested),
        overwrite_done_at=as_utc(row.overwrite_done_at) if row.overwrite_done_at else None,
        rows_deleted=row.rows_deleted,
        bytes_shredded=row.bytes_shredded,
        replays_deleted=row.replays_deleted,
        verified_rows_left=row.verified_rows_left,
        verified_at=as_utc(row.verified_at) if row.verified_at else None,
        previous_deletion_id=row.previous_deletion_id,
    )
