"""Forced null-overwrite: zero the recorded ranges of shredded frames inside their shared blobs.

Pending ranges are grouped per blob so one rewrite serves every deletion waiting on that blob.
Each rewrite: download with the generation, zero the ranges, check the size is unchanged,
replace only if the blob is still at that generation (else read again: two overwriters never
lose each other's zeros), keep the original expiry (a rewrite never extends retention), read the
ranges back as zeros, then mark the ranges done and audit, in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog
from vault_store.catalog.records import OverwriteJobRecord
from vault_store.errors import BlobNotFound, CorruptData, GenerationMismatch
from vault_store.services.retention import StepProgress, quiet

MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class OverwriteResult:
    """What one overwrite pass did."""

    blobs_rewritten: int
    ranges_zeroed: int
    bytes_zeroed: int
    bytes_rewritten: int
    conflicts_retried: int


class Overwriter:
    """Runs pending overwrite jobs against a blob store."""

    def __init__(
        self,
        catalog: Catalog,
        blob_store: BlobStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._deletions = catalog.deletions
        self._blobs = catalog.blobs
        self._store = blob_store
        self._clock = clock

    def run(
        self, *, deletion_id: str | None = None, progress: StepProgress | None = None
    ) -> OverwriteResult:
        """Zero every pending range (or only one deletion's) and record it; `progress` is told
        (step, done, total) after each blob rewritten."""
        report = progress or quiet
        by_blob: dict[str, list[OverwriteJobRecord]] = defaultdict(list)
        for job in self._deletions.pending_overwrites(deletion_id=deletion_id):
            by_blob[job.blob_path].append(job)
        totals = [0, 0, 0, 0, 0]
        for done, (path, blob_jobs) in enumerate(by_blob.items(), 1):
            for index, value in enumerate(self._rewrite(path, blob_jobs)):
                totals[index] += value
            report("blobs rewritten", done, len(by_blob))
        return OverwriteResult(*totals)

    def _rewrite(self, path: str, jobs: list[OverwriteJobRecord]) -> tuple[int, int, int, int, int]:
        ranges = sorted({(job.start, job.stop) for job in jobs})
        expires_at = self._blobs.expires_at(path)
        conflicts = 0
        rewritten = 0
        for _attempt in range(MAX_ATTEMPTS):
            try:
                data, generation = self._store.get_versioned(path)
            except BlobNotFound:
                # The whole blob is already gone (GC or retention): nothing left to zero.
                self._record(path, jobs, ranges, blob_size=0, rewritten=False)
                return 0, len(ranges), 0, 0, conflicts
            zeroed = bytearray(data)
            for start, stop in ranges:
                if stop > len(zeroed):
                    raise CorruptData(f"overwrite range [{start}, {stop}) is outside blob {path}")
                zeroed[start:stop] = bytes(stop - start)
            if len(zeroed) != len(data):
                raise CorruptData(f"zeroing changed the size of blob {path}")
            if zeroed == data:
                break  # another overwriter already zeroed these ranges
            try:
                self._store.replace(
                    path, bytes(zeroed), if_generation=generation, expires_at=expires_at
                )
            except GenerationMismatch:
                conflicts += 1
                continue
            rewritten = len(data)
            break
        else:
            raise GenerationMismatch(
                f"{path} kept changing during {MAX_ATTEMPTS} attempts",
                backend="overwrite",
                op="replace",
            )
        for start, stop in ranges:
            if self._store.get_range(path, start, stop) != bytes(stop - start):
                raise CorruptData(f"blob {path} does not read back zeros at [{start}, {stop})")
        self._record(path, jobs, ranges, blob_size=len(data), rewritten=bool(rewritten))
        zeroed_bytes = sum(stop - start for start, stop in ranges)
        return int(bool(rewritten)), len(ranges), zeroed_bytes, rewritten, conflicts

    def _record(
        self,
        path: str,
        jobs: list[OverwriteJobRecord],
        ranges: list[tuple[int, int]],
        *,
        blob_size: int,
        rewritten: bool,
    ) -> None:
        self._deletions.record_overwrite(
            path, jobs, ranges, blob_size=blob_size, rewritten=rewritten, now=self._clock()
        )
