"""Counters of one ingest run, for the CLI summary and the demo."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vault_store.vault import FlushResult, IngestResult


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input that was refused, where it came from, and why."""

    source: str
    reason: str


@dataclass(slots=True)
class IngestSummary:
    """Messages read, segments accepted, bytes in and stored, blobs written, rejections."""

    messages: int = 0
    segments: int = 0
    segment_bytes: int = 0
    blobs_written: int = 0
    bytes_stored: int = 0
    rows_inserted: int = 0
    duplicates: int = 0
    dropped_deleted: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def ingested(self, result: IngestResult, segment_bytes: int) -> None:
        """Count one segment taken in (a duplicate of a buffered one counts as a duplicate, one of
        a deleted replay or project as dropped)."""
        if result.dropped_deleted:
            self.dropped_deleted += 1
        elif result.buffered:
            self.segments += 1
            self.segment_bytes += segment_bytes
        else:
            self.duplicates += 1
        self.flushed(result.flushes)

    def flushed(self, results: list[FlushResult]) -> None:
        """Count blobs written by a flush."""
        for result in results:
            self.blobs_written += 1 if result.blob_path else 0  # no blob: all were duplicates
            self.bytes_stored += result.blob_bytes
            self.rows_inserted += result.inserted
            self.duplicates += result.duplicates
            self.dropped_deleted += result.dropped_deleted

    def reject(self, source: str, reason: str) -> None:
        """Count one refused input."""
        self.rejected.append(Rejection(source, reason))

    @property
    def segments_per_blob(self) -> float:
        """Packing achieved by this run (segments, not rows: a segment may be several parts)."""
        return self.segments / self.blobs_written if self.blobs_written else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        document = asdict(self)
        document["segments_per_blob"] = round(self.segments_per_blob, 2)
        return document
