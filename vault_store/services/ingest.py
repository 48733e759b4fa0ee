"""Ingest: admit segments (deleted targets never get a key), seal them, buffer and flush blobs.

The order under failure is the design's: blob first (create-only), then the rows in one catalog
transaction, and only then may a caller acknowledge the messages. A segment of a replay or
project that was deleted is dropped before a data key is made for it, whoever the caller is.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault_store.blobstore import BlobStore, blob_path
from vault_store.catalog import BlobRecord, Catalog, RangeRecord
from vault_store.core import crypto, parts
from vault_store.core.crypto import DataKey, FrameIdentity
from vault_store.core.keycache import KeyCache
from vault_store.core.keys import KeyContext, WrappedKey
from vault_store.core.message import Segment
from vault_store.core.packer import Packer, SealedSegment, pack
from vault_store.core.policies import FlushPolicy, KeyCachePolicy
from vault_store.errors import VaultError
from vault_store.kms import Kms
from vault_store.services.subjects import SubjectHasher

Owner = tuple[int, str]


@dataclass(frozen=True, slots=True)
class SealingKey:
    """The DEK this process seals a replay's segments with, and its wrapped form for the rows."""

    key: DataKey
    wrapped: WrappedKey
    key_check: bytes


@dataclass(frozen=True, slots=True)
class FlushResult:
    """One blob written: its path, frames packed, rows inserted, duplicates and deleted dropped."""

    blob_path: str
    retention_days: int
    identities: tuple[FrameIdentity, ...]
    frames: int
    blob_bytes: int
    inserted: int
    duplicates: int
    dropped_deleted: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    """One segment taken in: buffered (False if the same segment was already buffered, or if
    its replay or project was deleted: then `dropped_deleted`), and any blobs written."""

    buffered: bool
    flushes: list[FlushResult]
    dropped_deleted: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """A batch after the tombstone check: the segments to seal, and how many were dropped."""

    kept: list[Segment]
    dropped: int


def _segment_key(segment: SealedSegment) -> tuple[int, str, int]:
    return (segment.identity.project_id, segment.identity.replay_id, segment.identity.segment_id)


class _TargetDeleted(Exception):
    """Raised inside the sealing-key loader: the replay or its project is deleted."""


class Ingestor:
    """Seals segments under per-replay keys, buffers them per retention class, writes blobs."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        blob_store: BlobStore,
        kms: Kms,
        subjects: Callable[[], SubjectHasher],
        flush_policy: FlushPolicy,
        key_cache_policy: KeyCachePolicy,
        zstd_level: int,
        typed_parts: bool,
        pipeline_flushes: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._blob_store = blob_store
        self._kms = kms
        self._subjects = subjects
        self._zstd_level = zstd_level
        self._typed_parts = typed_parts
        self._clock = clock
        self._monotonic = monotonic
        self.seal_keys: KeyCache[SealingKey] = KeyCache.from_policy(key_cache_policy)
        self._packer = Packer(flush_policy)
        # One blob may be uploading and committing while the next one fills: sealing is CPU,
        # uploading waits on disk or network, so overlapping them raises ingest throughput.
        self._pipeline = pipeline_flushes
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="vault-flush")
        self._in_flight: tuple[list[SealedSegment], Future[FlushResult]] | None = None

    def close(self) -> None:
        """Wait for a flush under way (it ends committed or not at all); forget the keys."""
        self._flusher.shutdown(wait=True)
        self.seal_keys.clear()

    # -- admission: deleted targets never get a key ----------------------------------------

    def admit(self, segments: Sequence[Segment], *, actor: str) -> Admission:
        """Drop the segments whose replay or project is deleted (one catalog query for the
        batch) and record one aggregate audit event for what was dropped."""
        dead = self._catalog.tombstoned({(s.project_id, s.replay_id) for s in segments})
        if not dead:
            return Admission(list(segments), 0)
        dropped = [s for s in segments if (s.project_id, s.replay_id) in dead]
        by_project = Counter(s.project_id for s in dropped)
        self._catalog.record_dropped_deleted(
            actor=actor,
            at=self._clock(),
            segments=len(dropped),
            replays=len({(s.project_id, s.replay_id) for s in dropped}),
            by_project=dict(by_project),
        )
        kept = [s for s in segments if (s.project_id, s.replay_id) not in dead]
        return Admission(kept, len(dropped))

    # -- sealing and buffering ------------------------------------------------------------

    def ingest(self, segment: Segment) -> IngestResult:
        """Seal and buffer one segment; flush every buffer that reached a threshold.

        If a flush failed (in the background or now), its error is raised from this call and its
        frames are back in the buffer: nothing not yet reported flushed is lost, and ingesting
        the same segment again is safe (the buffer keeps one frame per identity).
        """
        finished = self._collect(wait=False)
        sealed = self._seal_unless_deleted(segment)
        # One clock read serves the buffer's age and the flush check: they are microseconds
        # apart, and this runs once per segment.
        now = self._monotonic()
        if sealed is None:
            return IngestResult(False, finished + self._flush_due(now), dropped_deleted=True)
        added = self._packer.add_segment(sealed, now)
        return IngestResult(added, finished + self._flush_due(now))

    def buffer(self, segment: Segment) -> bool:
        """Seal and buffer one segment without flushing anything (callers flush themselves).

        False if the same segment was already buffered or its target is deleted. A KMS failure
        raises and buffers nothing.
        """
        sealed = self._seal_unless_deleted(segment)
        if sealed is None:
            return False
        return self._packer.add_segment(sealed, self._monotonic())

    def discard_buffered(self) -> int:
        """Drop every buffered frame (their messages go back to the queue); how many."""
        self._collect_quietly()
        dropped = 0
        for days in self._packer.pending():
            dropped += len(self._packer.take(days))
        return dropped

    def _seal_unless_deleted(self, segment: Segment) -> list[SealedSegment] | None:
        try:
            return self.seal(segment)
        except _TargetDeleted:
            return None

    def seal(self, segment: Segment) -> list[SealedSegment]:
        """Seal one segment (one frame per typed part, or one whole) under its replay's DEK.

        The DEK is made and wrapped on first use, after a tombstone check: a deleted replay or
        project never gets a new key. If the KMS cannot wrap, this raises and nothing is
        buffered: never a plaintext fallback.
        """
        owner = (segment.project_id, segment.replay_id)
        sealing = self.seal_keys.get_or_load(owner, owner, lambda: self._new_sealing_key(owner))
        subjects = (
            self._subjects().hashes(segment.replay_event) if segment.replay_event else frozenset()
        )
        bodies = (
            parts.split(segment.body, segment.scan)
            if self._typed_parts
            else {parts.RECORDING: segment.body}
        )
        if segment.replay_video:
            # Mobile replays: the video is a part of its own, sealed and packed like the rest.
            bodies[parts.VIDEO] = segment.replay_video
        return [
            self._seal_part(segment, part, body, sealing, subjects) for part, body in bodies.items()
        ]

    def _seal_part(
        self,
        segment: Segment,
        part: str,
        body: bytes,
        sealing: SealingKey,
        subjects: frozenset[bytes],
    ) -> SealedSegment:
        identity = FrameIdentity(segment.project_id, segment.replay_id, segment.segment_id, part)
        header, ciphertext = crypto.seal_parts(body, sealing.key, identity, level=self._zstd_level)
        return SealedSegment(
            identity=identity,
            header=header,
            ciphertext=ciphertext,
            wrapped=sealing.wrapped,
            key_check=sealing.key_check,
            retention_days=segment.retention_days,
            plain_bytes=len(body),
            subjects=subjects,
        )

    def _new_sealing_key(self, owner: Owner) -> SealingKey:
        # Checked here, once per replay and process, so the check costs nothing per segment; a
        # replay deleted after its key was made is dropped by the flush's own tombstone check.
        if self._catalog.tombstoned({owner}):
            raise _TargetDeleted
        key = DataKey.generate()
        wrapped = self._kms.wrap(key, KeyContext(*owner))
        return SealingKey(key, wrapped, key.key_check())

    # -- flushing ------------------------------------------------------------------------

    def flush_due(self) -> list[FlushResult]:
        """Flush the buffers that reached their size, count or age threshold.

        With pipelining, a due buffer is handed to the background flusher (after the previous
        flush has finished) and its result comes back from a later call; without, it is
        written before this returns.
        """
        return self._flush_due(self._monotonic())

    def _flush_due(self, now: float) -> list[FlushResult]:
        results = []
        for days in self._packer.due(now):
            results += self._collect(wait=True)
            segments = self._packer.take(days)
            if self._pipeline:
                future = self._flusher.submit(self._write_blob, days, segments)
                self._in_flight = (segments, future)
            else:
                results.append(self._write_now(days, segments))
        return results + self._collect(wait=False)

    def flush(self) -> list[FlushResult]:
        """Write every buffered frame now, waiting for any background flush first."""
        results = self._collect(wait=True)
        for days in self._packer.pending():
            results.append(self._write_now(days, self._packer.take(days)))
        return results

    def _write_now(self, retention_days: int, segments: list[SealedSegment]) -> FlushResult:
        try:
            return self._write_blob(retention_days, segments)
        except BaseException:
            self._packer.restore(segments, self._monotonic())
            raise

    def _collect_quietly(self) -> None:
        """Wait out a background flush, whatever its outcome (its frames return on failure)."""
        with contextlib.suppress(VaultError):
            self._collect(wait=True)

    def _collect(self, *, wait: bool) -> list[FlushResult]:
        """The background flush's result once it is done; on failure its frames are re-queued."""
        if self._in_flight is None:
            return []
        segments, future = self._in_flight
        if not wait and not future.done():
            return []
        self._in_flight = None
        try:
            return [future.result()]
        except BaseException:
            self._packer.restore(segments, self._monotonic())
            raise

    def _write_blob(self, retention_days: int, segments: list[SealedSegment]) -> FlushResult:
        """Blob first, then rows in one transaction: a row must never point at a missing blob.

        The blob's intent is recorded before the upload: a crash between upload and insert leaves
        a pending intent (and maybe its object) that GC collects after its grace period; a crash
        after the insert means redelivery, whose duplicates are ignored.
        """
        # A segment is one unit and the first complete write wins: segments already stored are
        # not uploaded again, and a blob of nothing but such segments is not written at all.
        stored = self._catalog.stored_segments(
            {(s.identity.project_id, s.identity.replay_id, s.identity.segment_id) for s in segments}
        )
        everything = segments
        if stored:
            segments = [s for s in segments if _segment_key(s) not in stored]
            if not segments:
                return FlushResult(
                    blob_path="",
                    retention_days=retention_days,
                    identities=tuple(s.identity for s in everything),
                    frames=0,
                    blob_bytes=0,
                    inserted=0,
                    duplicates=len(everything),
                    dropped_deleted=0,
                )
        packed = pack(segments)
        created_at = self._clock()
        expires_at = created_at + timedelta(days=retention_days)
        path = blob_path(retention_days, created_at)
        # On record before the upload, so GC collects only blobs this store wrote whose rows
        # never came, never an object the catalog does not know.
        self._catalog.blobs.record_intent(
            path, retention_days=retention_days, created_at=created_at, expires_at=expires_at
        )
        self._blob_store.put(path, packed.chunks, expires_at=expires_at)
        rows = [
            RangeRecord(
                project_id=segment.identity.project_id,
                replay_id=segment.identity.replay_id,
                segment_id=segment.identity.segment_id,
                part=segment.identity.part,
                blob_path=path,
                start=start,
                stop=stop,
                wrapped_dek=segment.wrapped.ciphertext,
                kek=segment.wrapped.kek,
                key_check=segment.key_check,
                created_at=created_at,
                expires_at=expires_at,
            )
            for segment, (start, stop) in zip(packed.segments, packed.offsets, strict=True)
        ]
        outcome = self._catalog.insert_blob(
            BlobRecord(
                path=path,
                size=packed.size,
                frame_count=len(rows),
                retention_days=retention_days,
                created_at=created_at,
                expires_at=expires_at,
            ),
            rows,
            subjects={
                (s.identity.project_id, s.identity.replay_id, subject)
                for s in packed.segments
                for subject in s.subjects
            },
        )
        return FlushResult(
            blob_path=path,
            retention_days=retention_days,
            identities=tuple(segment.identity for segment in everything),
            frames=len(rows),
            blob_bytes=packed.size,
            inserted=outcome.inserted,
            duplicates=outcome.duplicates + len(everything) - len(segments),
            dropped_deleted=outcome.dropped_deleted,
        )
