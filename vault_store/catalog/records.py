"""Plain values the catalog takes and returns (no SQLAlchemy objects leave the catalog)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

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

    @property
    def dead_bytes(self) -> int:
        """Stored bytes no row points at any more (duplicates, shredded, expired)."""
        return self.bytes_stored - self.live_bytes

    @property
    def segments_per_blob(self) -> float:
        """Average packing factor (segments, not rows: a segment may be several parts)."""
        return self.segments / self.blobs if self.blobs else 0.0
