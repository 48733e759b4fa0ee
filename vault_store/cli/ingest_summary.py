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
    """Messages read; segments stored, duplicate and dropped, counted apart; blobs, bytes.

    `segments` counts only what the catalog really took: a segment buffered here and then found
    already stored is a duplicate, one whose replay or project was deleted meanwhile is dropped.
    The catalog answers in rows (a segment is one row per part, see `rows_*`); a blob's
    segments are split in the same proportions, exactly so whenever its rows agree (always, with
    one part per segment).
    """

    messages: int = 0
    segments_received: int = 0
    segments: int = 0
    duplicates: int = 0
    dropped_deleted: int = 0
    segment_bytes: int = 0
    blobs_written: int = 0
    bytes_stored: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    rows_dropped_deleted: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def ingested(self, result: IngestResult, segment_bytes: int) -> None:
        """Count one segment taken in (a repeat of a buffered one counts as a duplicate, one of
        a deleted replay or project as dropped), and the blobs written meanwhile."""
        self.segments_received += 1
        self.segment_bytes += segment_bytes
        if result.dropped_deleted:
            self.dropped_deleted += 1
        elif not result.buffered:
            self.duplicates += 1
        self.flushed(result.flushes)

    def flushed(self, results: list[FlushResult]) -> None:
        """Count what the catalog took from each blob written."""
        for result in results:
            self.blobs_written += 1 if result.blob_path else 0  # no blob: all were duplicates
            self.bytes_stored += result.blob_bytes
            self.rows_inserted += result.inserted
            self.rows_duplicate += result.duplicates
            self.rows_dropped_deleted += result.dropped_deleted
            stored, duplicate, dropped = split_segments(result)
            self.segments += stored
            self.duplicates += duplicate
            self.dropped_deleted += dropped

    def reject(self, source: str, reason: str) -> None:
        """Count one refused input."""
        self.rejected.append(Rejection(source, reason))

    @property
    def segments_per_blob(self) -> float:
        """Packing achieved by this run: segments stored per blob written."""
        return self.segments / self.blobs_written if self.blobs_written else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        document = asdict(self)
        document["segments_per_blob"] = round(self.segments_per_blob, 2)
        return document


def split_segments(result: FlushResult) -> tuple[int, int, int]:
    """A blob's segments as (stored, duplicate, dropped), in the proportions of its rows.

    Largest remainders keep the sum equal to the segments packed; when every row of the blob
    agrees (or a segment is one row) the split is exact.
    """
    # One identity per frame (a segment is one frame per part): count the segments apart.
    segments = len({(i.project_id, i.replay_id, i.segment_id) for i in result.identities})
    counts = (result.inserted, result.duplicates, result.dropped_deleted)
    rows = sum(counts)
    if rows == 0 or segments == 0:
        return 0, 0, 0
    shares = [count * segments / rows for count in counts]
    whole = [int(share) for share in shares]
    by_remainder = sorted(range(3), key=lambda i: shares[i] - whole[i], reverse=True)
    for index in by_remainder[: segments - sum(whole)]:
        whole[index] += 1
    return whole[0], whole[1], whole[2]
