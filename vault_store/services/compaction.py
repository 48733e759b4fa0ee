"""Compaction: finished replays' sealed frames copied unchanged into one blob, rows repointed.

A frame's associated data names its replay, segment and part, never its location, so a frame is
moved by copying its bytes: no key is unwrapped, nothing is decrypted or re-encrypted. Finished
replays of one retention class (and close expiries) are packed into one compacted blob,
contiguous in segment order, so a long replay spread over hundreds of flushed blobs reads back in
one or two ranged GETs.

The order under failure is the flush's: the blob's intent is recorded (pending), the blob is
uploaded create-only, then one catalog transaction repoints the rows that still point at their
source range and turns the intent into the blob's record. A crash before that commit leaves the
rows where they were (every replay readable) and a pending intent GC removes after its grace; a
crash after it leaves the sources dead, which GC deletes. A replay deleted meanwhile makes the
commit refuse and the new object is deleted at once: a shred racing a compaction leaves no row
and no new copy.

Retention: each row keeps its own expiry. The compacted blob's record expires with its last row,
and its custom time (what GCS lifecycle rules count from) is its earliest row's creation, as
the source blob's was; rows packed together expire within `max_expiry_spread_seconds` of each
other. So nothing expires early, and no frame outlives its expiry by more than that spread
(12 hours by default, half the lifecycle rules' one-day margin).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vault_store.blobstore import BlobStore, blob_path
from vault_store.catalog import BlobRecord, Catalog, RangeRecord
from vault_store.catalog.compaction import (
    CompactionIntentLost,
    CompactionRaced,
    FinishedReplay,
    Move,
)
from vault_store.core.coalesce import plan_fetches
from vault_store.core.policies import CompactionPolicy, ReadPolicy
from vault_store.errors import BlobNotFound, CorruptData
from vault_store.services.retention import StepProgress, quiet


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one compaction run found and did (or, dry, would do)."""

    replays_finished: int = 0
    replays_compacted: int = 0
    replays_skipped: int = 0
    replays_raced: int = 0
    blobs_written: int = 0
    rows_moved: int = 0
    bytes_copied: int = 0
    source_gets: int = 0
    source_blobs: int = 0
    dry_run: bool = False
    blob_paths: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    """Finished replays bound for one compacted blob."""

    retention_days: int
    replays: list[FinishedReplay]
    bytes: int


class Compactor:
    """Finds finished replays and moves them into compacted blobs."""

    def __init__(
        self,
        catalog: Catalog,
        blob_store: BlobStore,
        *,
        policy: CompactionPolicy,
        read_policy: ReadPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._store = blob_store
        self._policy = policy
        self._read = read_policy
        self._clock = clock

    def run(
        self,
        *,
        idle_seconds: float | None = None,
        dry_run: bool = False,
        progress: StepProgress | None = None,
    ) -> CompactionResult:
        """Compact every finished replay (idle past `idle_seconds`, default the policy's); a dry
        run plans the same blobs and writes nothing. `progress` is told (step, done, total)
        after each blob."""
        report = progress or quiet
        now = self._clock()
        idle = self._policy.idle_seconds if idle_seconds is None else idle_seconds
        finished = self._catalog.compaction.finished(
            idle_before=now - timedelta(seconds=idle),
            started_before=now - timedelta(seconds=self._policy.max_replay_seconds),
            limit=self._policy.max_replays_per_run,
        )
        spread = timedelta(seconds=self._policy.max_expiry_spread_seconds)
        fitting = [r for r in finished if r.last_expiry - r.first_expiry <= spread]
        groups = self._groups(fitting)
        totals = {
            "replays_finished": len(finished),
            "replays_skipped": len(finished) - len(fitting),
            "replays_compacted": 0,
            "replays_raced": 0,
            "blobs_written": 0,
            "rows_moved": 0,
            "bytes_copied": 0,
            "source_gets": 0,
            "source_blobs": 0,
        }
        paths: list[str] = []
        with ThreadPoolExecutor(self._read.concurrency, thread_name_prefix="vault-compact") as pool:
            for done, group in enumerate(groups, 1):
                self._compact(group, pool, totals, paths, dry_run=dry_run)
                report("compacted blobs", done, len(groups))
        return CompactionResult(**totals, dry_run=dry_run, blob_paths=paths)

    def _groups(self, replays: Sequence[FinishedReplay]) -> list[_Group]:
        """Replays of one retention class, by expiry, up to the target size and expiry spread."""
        spread = timedelta(seconds=self._policy.max_expiry_spread_seconds)
        ordered = sorted(replays, key=lambda r: (r.retention_days, r.first_expiry, r.replay_id))
        groups: list[_Group] = []
        current: _Group | None = None
        first_expiry = datetime.min.replace(tzinfo=UTC)
        for replay in ordered:
            fits = (
                current is not None
                and current.retention_days == replay.retention_days
                and current.bytes + replay.bytes <= self._policy.target_bytes
                and replay.last_expiry - first_expiry <= spread
            )
            if current is None or not fits:
                current = _Group(replay.retention_days, [], 0)
                groups.append(current)
                first_expiry = replay.first_expiry
            current.replays.append(replay)
            current.bytes += replay.bytes
        return groups

    def _compact(
        self,
        group: _Group,
        pool: ThreadPoolExecutor,
        totals: dict[str, int],
        paths: list[str],
        *,
        dry_run: bool,
    ) -> None:
        rows = self._catalog.compaction.rows([(r.project_id, r.replay_id) for r in group.replays])
        rows = _within_spread(rows, timedelta(seconds=self._policy.max_expiry_spread_seconds))
        if not rows:
            return
        fetches = plan_fetches(
            [(row.blob_path, row.start, row.stop) for row in rows],
            gap=self._read.gap_bytes,
            max_span=self._read.max_fetch_bytes,
        )
        totals["source_gets"] += len(fetches)
        totals["source_blobs"] += len({row.blob_path for row in rows})
        if dry_run:
            totals["blobs_written"] += 1
            totals["rows_moved"] += len(rows)
            totals["bytes_copied"] += sum(row.size for row in rows)
            totals["replays_compacted"] += len({(r.project_id, r.replay_id) for r in rows})
            return
        frames: list[bytes] = [b""] * len(rows)
        for fetch, data in zip(
            fetches,
            pool.map(lambda f: self._store.get_range(f.blob_path, f.start, f.stop), fetches),
            strict=True,
        ):
            for index in fetch.members:
                row = rows[index]
                frames[index] = data[row.start - fetch.start : row.stop - fetch.start]
                if len(frames[index]) != row.size:
                    raise CorruptData(f"short read of {row.blob_path} at [{row.start}, {row.stop})")
        # Contiguous in (replay, segment, part) order: a page of a replay is one range.
        moves, offset = [], 0
        for row, frame in zip(rows, frames, strict=True):
            moves.append(Move(row, offset, offset + len(frame)))
            offset += len(frame)
        now = self._clock()
        retention = timedelta(days=group.retention_days)
        expires_at = max(row.expires_at for row in rows)
        path = blob_path(group.retention_days, now)
        self._catalog.blobs.record_intent(
            path, retention_days=group.retention_days, created_at=now, expires_at=expires_at
        )
        # Crash from here to the commit: the intent stays pending and GC removes the object
        # after its grace; the rows still point at their sources, which are all still live.
        self._store.put(
            path,
            frames,
            expires_at=expires_at,
            # Lifecycle rules count from here: the earliest row's creation, as its source's.
            custom_time=min(row.expires_at for row in rows) - retention,
        )
        record = BlobRecord(
            path=path,
            size=offset,
            frame_count=len(rows),
            retention_days=group.retention_days,
            created_at=now,
            expires_at=expires_at,
        )
        try:
            outcome = self._catalog.compaction.commit(record, moves, now=now)
        except CompactionIntentLost:
            # GC collected the intent while this copy ran: nothing points at the object, and
            # GC, having deleted it before this upload, will not look again.
            with contextlib.suppress(BlobNotFound):
                self._store.delete(path)
            raise
        except CompactionRaced as raced:
            # A replay was deleted during the copy: its frames must not stay readable or
            # stored in a new place. The whole blob goes; the rest is compacted next run.
            with contextlib.suppress(BlobNotFound):
                self._store.delete(path)
            self._catalog.compaction.abandon(path)
            totals["replays_raced"] += len(raced.replays)
            return
        totals["blobs_written"] += 1
        totals["rows_moved"] += outcome.rows_moved
        totals["bytes_copied"] += offset
        totals["replays_compacted"] += outcome.replays_moved
        paths.append(path)


def _within_spread(rows: list[RangeRecord], spread: timedelta) -> list[RangeRecord]:
    """Drop the replays (whole) that would widen the blob's expiry spread past `spread`: rows
    read now may differ from those the group was planned with (a late segment)."""
    if not rows:
        return rows
    by_replay: dict[tuple[int, str], list[RangeRecord]] = {}
    for row in rows:
        by_replay.setdefault((row.project_id, row.replay_id), []).append(row)
    kept: list[RangeRecord] = []
    low = high = None
    for replay_rows in by_replay.values():
        first = min(row.expires_at for row in replay_rows)
        last = max(row.expires_at for row in replay_rows)
        new_low = first if low is None else min(low, first)
        new_high = last if high is None else max(high, last)
        if new_high - new_low > spread:
            continue
        low, high = new_low, new_high
        kept.extend(replay_rows)
    return kept
