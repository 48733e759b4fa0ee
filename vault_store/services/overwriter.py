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
from typing import Any

from sqlalchemy import func, select, update

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog, audit
from vault_store.catalog.models import Blob, Deletion, OverwriteJob
from vault_store.catalog.records import as_utc
from vault_store.errors import BlobNotFound, CorruptData, GenerationMismatch

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
        self._catalog = catalog
        self._store = blob_store
        self._clock = clock

    def run(self, *, deletion_id: str | None = None) -> OverwriteResult:
        """Zero every pending range (or only one deletion's) and record it."""
        query = select(OverwriteJob).where(OverwriteJob.done_at.is_(None))
        if deletion_id is not None:
            query = query.where(OverwriteJob.deletion_id == deletion_id)
        with self._catalog.connection("overwrite") as conn:
            jobs = conn.execute(query.order_by(OverwriteJob.blob_path, OverwriteJob.start)).all()
        by_blob: dict[str, list[Any]] = defaultdict(list)
        for job in jobs:
            by_blob[job.blob_path].append(job)
        totals = [0, 0, 0, 0, 0]
        for path, blob_jobs in by_blob.items():
            for index, value in enumerate(self._rewrite(path, blob_jobs)):
                totals[index] += value
        return OverwriteResult(*totals)

    def _rewrite(self, path: str, jobs: list[Any]) -> tuple[int, int, int, int, int]:
        ranges = sorted({(job.start, job.stop) for job in jobs})
        with self._catalog.connection("overwrite") as conn:
            expires_at = conn.execute(select(Blob.expires_at).where(Blob.path == path)).scalar_one()
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
                    path, bytes(zeroed), if_generation=generation, expires_at=as_utc(expires_at)
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
        jobs: list[Any],
        ranges: list[tuple[int, int]],
        *,
        blob_size: int,
        rewritten: bool,
    ) -> None:
        now = self._clock()
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
                pending = conn.execute(
                    select(func.count())
                    .select_from(OverwriteJob)
                    .where(OverwriteJob.deletion_id == deletion_id, OverwriteJob.done_at.is_(None))
                ).scalar_one()
                if pending:
                    continue
                # Only a deletion whose rows are all gone can be finished here; one still deleting
                # chunks records more ranges and finishes itself (Shredder._finish).
                finished = conn.execute(
                    update(Deletion)
                    .where(Deletion.id == deletion_id, Deletion.status == "overwrite_pending")
                    .values(overwrite_done_at=now, status="done")
                ).rowcount
                if finished:
                    audit.append(
                        conn,
                        kind="deletion.overwritten",
                        actor="vault-store",
                        at=now,
                        details={"deletion_id": deletion_id},
                    )
