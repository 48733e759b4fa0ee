"""The Vault facade: ingest, flush and read, wired from settings to the three backends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from vault_store.blobstore import BlobStore, blob_path, blob_store_from_url
from vault_store.catalog import BlobRecord, Catalog, CatalogStats, RangeRecord
from vault_store.core import crypto, parts
from vault_store.core.crypto import DataKey, FrameIdentity
from vault_store.core.keycache import KeyCache
from vault_store.core.message import Segment, parse_message
from vault_store.core.packer import Packer, SealedSegment, pack
from vault_store.errors import VaultError
from vault_store.kms import KeyContext, Kms, WrappedKey, kms_from_url
from vault_store.services.overwriter import Overwriter
from vault_store.services.reader import KeyCacheStats, Page, Reader, ReadTotals, StoredSegment
from vault_store.services.shredder import DeletionStatus, Scope, Shredder
from vault_store.services.subjects import SubjectHasher
from vault_store.services.tokens import IssuedToken, Principal, TokenInfo, TokenStore
from vault_store.settings import FlushPolicy, KeyCachePolicy, ReadPolicy, Settings


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
    """One segment taken in: buffered (False if the same segment was already buffered) and
    any blobs the buffering caused to be written."""

    buffered: bool
    flushes: list[FlushResult]


class Vault:
    """Everything vault-store does, over a catalog, a blob store and a KMS."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        blob_store: BlobStore,
        kms: Kms,
        flush_policy: FlushPolicy | None = None,
        read_policy: ReadPolicy | None = None,
        key_cache_policy: KeyCachePolicy | None = None,
        zstd_level: int = 3,
        typed_parts: bool = False,
        pipeline_flushes: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.blob_store = blob_store
        self.kms = kms
        self._zstd_level = zstd_level
        self._typed_parts = typed_parts
        self._clock = clock
        self._monotonic = monotonic
        cache = key_cache_policy or KeyCachePolicy()
        self.read_keys: KeyCache[DataKey] = KeyCache(
            ttl_seconds=cache.ttl_seconds, max_uses=cache.max_uses, max_entries=cache.max_entries
        )
        self.seal_keys: KeyCache[SealingKey] = KeyCache(
            ttl_seconds=cache.ttl_seconds, max_uses=cache.max_uses, max_entries=cache.max_entries
        )
        self.packer = Packer(flush_policy or FlushPolicy())
        self._subjects: SubjectHasher | None = None
        # One blob may be uploading and committing while the next one fills: sealing is CPU,
        # uploading waits on disk or network, so overlapping them raises ingest throughput.
        self._pipeline = pipeline_flushes
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="vault-flush")
        self._in_flight: tuple[list[SealedSegment], Future[FlushResult]] | None = None
        self.reader = Reader(catalog, blob_store, kms, self.read_keys, read_policy or ReadPolicy())
        self.shredder = Shredder(catalog, clock=clock)
        self.overwriter = Overwriter(catalog, blob_store, clock=clock)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pipeline_flushes: bool = True,
        blob_store: BlobStore | None = None,
    ) -> Vault:
        """Build the backends the settings name (or use `blob_store`); the one place where
        wiring happens."""
        catalog = Catalog(settings.database_url, partition_width=settings.catalog_partition)
        if settings.auto_migrate:
            catalog.migrate()
        return cls(
            catalog=catalog,
            blob_store=blob_store or blob_store_from_url(settings.blob_url),
            kms=kms_from_url(settings.kms_url, endpoint=settings.kms_endpoint),
            flush_policy=settings.flush,
            read_policy=settings.read,
            key_cache_policy=settings.key_cache,
            zstd_level=settings.zstd_level,
            typed_parts=settings.parts == "typed",
            pipeline_flushes=pipeline_flushes,
        )

    def close(self) -> None:
        """Release threads and connections; unflushed frames are dropped (flush first).

        A flush already under way is waited for, so it ends committed or not at all.
        """
        self._flusher.shutdown(wait=True)
        self.reader.close()
        self.read_keys.clear()
        self.seal_keys.clear()
        self.catalog.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- ingest ---------------------------------------------------------------------------

    def ingest_message(self, raw: bytes) -> IngestResult:
        """Validate, seal and buffer one ingest message; InvalidInput stores nothing."""
        return self.ingest_segment(parse_message(raw))

    def ingest_segment(self, segment: Segment) -> IngestResult:
        """Seal and buffer one segment; flush every buffer that reached a threshold.

        If a flush failed (in the background or now), its error is raised from this call and its
        frames are back in the buffer: nothing not yet reported flushed is lost, and ingesting
        the same segment again is safe (the buffer keeps one frame per identity).
        """
        finished = self._collect(wait=False)
        now = self._monotonic()
        added = [self.packer.add(sealed, now) for sealed in self.seal(segment)]
        return IngestResult(any(added), finished + self.flush_due())

    def buffer(self, segment: Segment) -> bool:
        """Seal and buffer one segment without flushing anything (callers flush themselves).

        False if the same segment was already buffered. A KMS failure raises and buffers
        nothing.
        """
        now = self._monotonic()
        return any([self.packer.add(sealed, now) for sealed in self.seal(segment)])

    def discard_buffered(self) -> int:
        """Drop every buffered frame (their messages go back to the queue); how many."""
        self._collect_quietly()
        dropped = 0
        for days in self.packer.pending():
            dropped += len(self.packer.take(days))
        return dropped

    def seal(self, segment: Segment) -> list[SealedSegment]:
        """Seal one segment (one frame per typed part, or one whole) under its replay's DEK.

        The DEK is made and wrapped on first use; if the KMS cannot wrap, this raises and nothing
        is buffered: never a plaintext fallback.
        """
        owner = (segment.project_id, segment.replay_id)
        sealing = self.seal_keys.get_or_load(owner, owner, lambda: self._new_sealing_key(owner))
        subjects = (
            self.subjects().hashes(segment.replay_event) if segment.replay_event else frozenset()
        )
        bodies = (
            parts.split(segment.body, segment.events)
            if self._typed_parts
            else {parts.RECORDING: segment.body}
        )
        sealed = []
        for part, body in bodies.items():
            identity = FrameIdentity(
                segment.project_id, segment.replay_id, segment.segment_id, part
            )
            header, ciphertext = crypto.seal_parts(
                body, sealing.key, identity, level=self._zstd_level
            )
            sealed.append(
                SealedSegment(
                    identity=identity,
                    header=header,
                    ciphertext=ciphertext,
                    wrapped=sealing.wrapped,
                    key_check=sealing.key_check,
                    retention_days=segment.retention_days,
                    plain_bytes=len(body),
                    subjects=subjects,
                )
            )
        return sealed

    def subjects(self) -> SubjectHasher:
        """The subject hasher (its key is unwrapped from the catalog on first use)."""
        if self._subjects is None:
            self._subjects = SubjectHasher.load_or_create(self.catalog, self.kms)
        return self._subjects

    def _new_sealing_key(self, owner: tuple[int, str]) -> SealingKey:
        key = DataKey.generate()
        wrapped = self.kms.wrap(key, KeyContext(*owner))
        return SealingKey(key, wrapped, key.key_check())

    def flush_due(self) -> list[FlushResult]:
        """Flush the buffers that reached their size, count or age threshold.

        With pipelining, a due buffer is handed to the background flusher (after the previous
        flush has finished) and its result comes back from a later call; without, it is
        written before this returns.
        """
        results = []
        for days in self.packer.due(self._monotonic()):
            results += self._collect(wait=True)
            segments = self.packer.take(days)
            if self._pipeline:
                future = self._flusher.submit(self._write_blob, days, segments)
                self._in_flight = (segments, future)
            else:
                results.append(self._write_now(days, segments))
        return results + self._collect(wait=False)

    def flush(self) -> list[FlushResult]:
        """Write every buffered frame now, waiting for any background flush first."""
        results = self._collect(wait=True)
        for days in self.packer.pending():
            results.append(self._write_now(days, self.packer.take(days)))
        return results

    def _write_now(self, retention_days: int, segments: list[SealedSegment]) -> FlushResult:
        try:
            return self._write_blob(retention_days, segments)
        except BaseException:
            self.packer.restore(segments, self._monotonic())
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
            self.packer.restore(segments, self._monotonic())
            raise

    def _write_blob(self, retention_days: int, segments: list[SealedSegment]) -> FlushResult:
        """Blob first, then rows in one transaction: a row must never point at a missing blob.

        A crash between upload and insert leaves an orphan blob (no rows) that GC collects; a
        crash after the insert means redelivery, whose duplicates are ignored.
        """
        packed = pack(segments)
        created_at = self._clock()
        expires_at = created_at + timedelta(days=retention_days)
        path = blob_path(retention_days, created_at)
        self.blob_store.put(path, packed.chunks, expires_at=expires_at)
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
        outcome = self.catalog.insert_blob(
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
            identities=tuple(segment.identity for segment in packed.segments),
            frames=len(rows),
            blob_bytes=packed.size,
            inserted=outcome.inserted,
            duplicates=outcome.duplicates,
            dropped_deleted=outcome.dropped_deleted,
        )

    def forget_keys(self, project_id: int, replay_id: str | None = None) -> int:
        """Drop this process's plaintext keys of a replay (or of a whole project); returns how
        many went. Call after a shred so this process stops serving or sealing with them."""
        caches: tuple[KeyCache[DataKey] | KeyCache[SealingKey], ...] = (
            self.read_keys,
            self.seal_keys,
        )
        if replay_id is None:
            return sum(cache.evict_project(project_id) for cache in caches)
        return sum(cache.evict_replay(project_id, replay_id) for cache in caches)

    # -- delete ---------------------------------------------------------------------------

    def shred(
        self,
        scope: Scope,
        project_id: int,
        *,
        requested_by: str,
        reason: str,
        replay_id: str | None = None,
        user: str | None = None,
        overwrite: bool = False,
        run: bool = True,
        progress: Callable[[int, int], None] | None = None,
        deletion_id: str | None = None,
    ) -> DeletionStatus:
        """Delete a replay, a user's replays or a project by destroying their keys.

        `deletion_id` makes the request idempotent: asked again, the recorded deletion resumes.

        The request is recorded first (from then on reads answer shredded and late segments
        are dropped), this process's cached keys are evicted, then unless `run` is False the rows
        are deleted in chunks, and with `overwrite` the ciphertext is zeroed before returning.
        Other processes stop serving the replay within their key cache's time-to-live.
        """
        subject_hash = self.subjects().hash(user) if scope is Scope.USER and user else None
        deletion_id = self.shredder.request(
            scope,
            project_id,
            requested_by=requested_by,
            reason=reason,
            replay_id=replay_id,
            subject_hash=subject_hash,
            overwrite=overwrite,
            deletion_id=deletion_id,
        )
        # A user's replays are known only to the catalog: evicting the project is simpler and
        # merely costs a few extra unwraps.
        self.forget_keys(project_id, replay_id if scope is Scope.REPLAY else None)
        if not run:
            return self.shredder.status(deletion_id)
        return self.resume_deletion(deletion_id, progress=progress)

    def resume_deletion(
        self, deletion_id: str, *, progress: Callable[[int, int], None] | None = None
    ) -> DeletionStatus:
        """Run (or continue) a recorded deletion to the end, including its overwrite."""
        status = self.shredder.run(deletion_id, progress=progress)
        if status.overwrite_requested and status.overwrite_done_at is None:
            self.overwriter.run(deletion_id=deletion_id)
            status = self.shredder.status(deletion_id)
        return status

    # -- read -----------------------------------------------------------------------------

    def segments(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Iterator[StoredSegment]:
        """Decrypted segment parts of a replay in order (ReplayNotFound / ReplayShredded)."""
        return self.reader.segments(project_id, replay_id, start=start, stop=stop, only=only)

    def read_recording(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Iterator[bytes]:
        """The merged recording (of the `only` parts, if given), as chunks of one JSON array."""
        return self.reader.recording(project_id, replay_id, start=start, stop=stop, only=only)

    def stats(self) -> CatalogStats:
        """Catalog totals."""
        return self.catalog.stats()

    # -- api ------------------------------------------------------------------------------

    def replay_page(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        max_segments: int | None = None,
        max_bytes: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Page:
        """Plan one page of a replay with one range query (ReplayNotFound / ReplayShredded)."""
        return self.reader.plan_page(
            project_id,
            replay_id,
            start=start,
            max_segments=max_segments,
            max_bytes=max_bytes,
            only=only,
        )

    def read_page(self, page: Page) -> Iterator[bytes]:
        """A planned page's merged recording, as chunks of one JSON array."""
        return self.reader.read_page(page)

    def read_segment(
        self,
        project_id: int,
        replay_id: str,
        segment_id: int,
        *,
        only: frozenset[str] | None = None,
    ) -> bytes | None:
        """One segment's events as a JSON array, None if the replay has no such segment."""
        return self.reader.read_segment(project_id, replay_id, segment_id, only=only)

    def deletion_status(self, deletion_id: str) -> DeletionStatus:
        """A recorded deletion's status and counts (InvalidInput if there is none)."""
        return self.shredder.status(deletion_id)

    def read_counters(self) -> ReadTotals:
        """What this process's reads have cost so far: GETs, bytes, frames, KMS unwraps."""
        return self.reader.counters.totals()

    def key_cache_stats(self) -> KeyCacheStats:
        """Hits, misses and size of this process's read key cache."""
        return self.reader.key_cache_stats()

    def issue_token(
        self, projects: Collection[int], permissions: Collection[str], *, label: str = ""
    ) -> IssuedToken:
        """Make an API token for `projects` with `permissions` (its secret is shown once)."""
        return self._token_store().create(projects, permissions, label=label)

    def revoke_token(self, token_id: str) -> bool:
        """Revoke an API token by id; False if there is no such live token."""
        return self._token_store().revoke(token_id)

    def list_tokens(self) -> list[TokenInfo]:
        """Every API token's id, label, projects, scopes and state (never a secret)."""
        return self._token_store().list()

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked API token; None for anything else."""
        return self._token_store().authenticate(token)

    def _token_store(self) -> TokenStore:
        # Stateless over the catalog: cheaper to make per call than to keep in __init__.
        return TokenStore(self.catalog.tokens, clock=self._clock)
