"""Plain values the catalog takes and returns (no SQLAlchemy objects leave the catalog)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from vault_store.core.message import MAX_STORED_ID

__all__ = ["MAX_STORED_ID"]


def as_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (SQLite hands back naive ones; we store only UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class RangeRecord:
    """One row of recording_byte_range: a sealed frame's location and its wrapped key."""

    project_id: int
    replay_id: str
    segment_id: int
    part: str
    blob_path: str
    start: int
    stop: int
    wrapped_dek: bytes
    kek: str
    key_check: bytes
    created_at: datetime
    expires_at: datetime

    @property
    def size(self) -> int:
        """Stored bytes of the frame."""
        return self.stop - self.start

    def __repr__(self) -> str:
        # Keep the wrapped key and its check out of any log line that prints a row.
        return (
            f"RangeRecord(project_id={self.project_id}, replay_id={self.replay_id!r}, "
            f"segment_id={self.segment_id}, part={self.part!r}, blob_path={self.blob_path!r}, "
            f"start={self.start}, stop={self.stop})"
        )


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """A packed blob as the catalog records it."""

    path: str
    size: int
    frame_count: int
    retention_days: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """One flush transaction: rows inserted, duplicates ignored, deleted targets dropped."""

    inserted: int
    duplicates: int
    dropped_deleted: int
    live_bytes: int


class ReplayState(Enum):
    """Whether a replay has rows, was shredded, or is unknown."""

    STORED = "stored"
    SHREDDED = "shredded"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CatalogStats:
    """Counts over the whole catalog."""

    replays: int
    segments: int
    rows: int
    blobs: int
    bytes_stored: int
    live_bytes: int
    # Mobile replay video parts and their sealed bytes (a part of the rows above).
    video_parts: int = 0
    video_bytes: int = 0

    @property
    def dead_bytes(self) -> int:
        """Stored bytes no row points at any more (duplicates, shredded, expired)."""
        return self.bytes_stored - self.live_bytes

    @property
    def segments_per_blob(self) -> float:
        """Average packing factor (segments, not rows: a segment may be several parts)."""
        return self.segments / self.blobs if self.blobs else 0.0


class BlobState(Enum):
    """A blob's life: announced before its upload (pending), some frame still live, nothing live
    left, or removed from the store."""

    PENDING = "pending"
    LIVE = "live"
    DEAD = "dead"
    DELETED = "deleted"


class Scope(Enum):
    """What a deletion covers."""

    REPLAY = "replay"
    USER = "user"
    PROJECT = "project"


class Status(Enum):
    """Where a deletion is: recorded, deleting rows, waiting for its overwrite, or done; or
    nothing_held: its target held no data when it was requested (recorded, nothing deleted)."""

    PENDING = "pending"
    RUNNING = "running"
    OVERWRITE_PENDING = "overwrite_pending"
    DONE = "done"
    NOTHING_HELD = "nothing_held"

    @property
    def final(self) -> bool:
        """Whether running the deletion again would change nothing (its rows are gone)."""
        return self in (Status.OVERWRITE_PENDING, Status.DONE, Status.NOTHING_HELD)


@dataclass(frozen=True, slots=True)
class DeletionStatus:
    """A deletion request and its progress."""

    id: str
    scope: Scope
    project_id: int
    target: str | None
    requested_by: str
    reason: str
    requested_at: datetime
    status: Status
    completed_at: datetime | None
    rows_deleted: int
    bytes_shredded: int
    replays_deleted: int
    overwrite_requested: bool
    overwrite_done_at: datetime | None
    # Key-bearing rows of the target found by the transaction that marked it done (0), and when.
    verified_rows_left: int | None = None
    verified_at: datetime | None = None
    # For nothing_held: the earlier deletion that already took this replay.
    previous_deletion_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json and the API (enums as their values, times as ISO 8601)."""
        return {name: _plain(getattr(self, name)) for name in self.__dataclass_fields__}


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Where a frame lay in its blob: what a deleted row leaves behind."""

    blob_path: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Stored bytes of the frame."""
        return self.stop - self.start


@dataclass(slots=True)
class DeletedRows:
    """What a chunk of deleted range rows leaves behind, summed by the database: how many rows,
    and their stored bytes per blob (one entry per blob, never one per row)."""

    rows: int = 0
    bytes_per_blob: dict[str, int] = field(default_factory=dict)

    def add(self, path: str, rows: int, size: int) -> None:
        """Count `rows` rows of blob `path` holding `size` bytes."""
        self.rows += rows
        self.bytes_per_blob[path] = self.bytes_per_blob.get(path, 0) + size

    def extend(self, other: DeletedRows) -> None:
        """Add another chunk's rows and bytes to these."""
        for path, size in other.bytes_per_blob.items():
            self.bytes_per_blob[path] = self.bytes_per_blob.get(path, 0) + size
        self.rows += other.rows


@dataclass(frozen=True, slots=True)
class OverwriteJobRecord:
    """One range of a shredded frame waiting to be zeroed in its blob."""

    id: int
    deletion_id: str
    blob_path: str
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class BlobSize:
    """A blob's path and stored size (what removing it frees)."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its name, its range of buckets [first, end), and its size.

    `rows_estimate` is PostgreSQL's estimate (reltuples), or the exact count when `rows_exact`;
    `analyzed` is False while there is no estimate yet (before the first ANALYZE or VACUUM).
    """

    name: str
    first: date
    end: date
    rows_estimate: int
    total_bytes: int
    rows_exact: bool = False
    analyzed: bool = True

    def covers(self, day: date) -> bool:
        """Whether bucket `day` falls in this partition's range."""
        return self.first <= day < self.end


@dataclass(frozen=True, slots=True)
class CatalogSize:
    """The range table's partitions (PostgreSQL; none on SQLite) and its bytes on disk."""

    partitions: list[Partition]
    table_bytes: int
