"""The Vault facade: ingest, flush and read, wired from settings to the three backends."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from vault_store.blobstore import BlobStore, blob_store_from_url
from vault_store.catalog import Catalog, CatalogStats
from vault_store.catalog.audit import AuditRecord, ChainReport
from vault_store.catalog.compaction import CompactionStats
from vault_store.catalog.records import DeletionStatus, Scope
from vault_store.core.crypto import DataKey
from vault_store.core.keycache import KeyCache
from vault_store.core.message import Segment, parse_message
from vault_store.core.policies import (
    CompactionPolicy,
    CopyPolicy,
    FlushPolicy,
    KeyCachePolicy,
    ReadPolicy,
)
from vault_store.errors import BlobNotFound, ConfigError, VaultError
from vault_store.kms import Kms, LocalKms, kms_from_url
from vault_store.services import gc, lifecycle, maintenance, report, retention, rewrap
from vault_store.services.compaction import CompactionResult, Compactor
from vault_store.services.ingest import (
    Admission,
    FlushResult,
    Ingestor,
    IngestResult,
    SealingKey,
)
from vault_store.services.keycheck import check_keks
from vault_store.services.overwriter import Overwriter, OverwriteResult
from vault_store.services.reader import KeyCacheStats, Page, Reader, ReadTotals, StoredSegment
from vault_store.services.shredder import Shredder
from vault_store.services.subjects import SubjectHasher
from vault_store.services.tokens import IssuedToken, Principal, TokenInfo, TokenStore
from vault_store.settings import Settings

__all__ = ["Admission", "FlushResult", "IngestResult", "Vault"]


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
        compaction_policy: CompactionPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._blob_store = blob_store
        self._kms = kms
        self._clock = clock
        cache = key_cache_policy or KeyCachePolicy()
        self._read_keys: KeyCache[DataKey] = KeyCache.from_policy(cache)
        self._subjects: SubjectHasher | None = None
        self._ingestor = Ingestor(
            catalog=catalog,
            blob_store=blob_store,
            kms=kms,
            subjects=self.subjects,
            flush_policy=flush_policy or FlushPolicy(),
            key_cache_policy=cache,
            zstd_level=zstd_level,
            typed_parts=typed_parts,
            pipeline_flushes=pipeline_flushes,
            clock=clock,
            monotonic=monotonic,
        )
        self._reader = Reader(
            catalog, blob_store, kms, self._read_keys, read_policy or ReadPolicy()
        )
        self._shredder = Shredder(catalog, clock=clock)
        self._overwriter = Overwriter(catalog, blob_store, clock=clock)
        self._compactor = Compactor(
            catalog,
            blob_store,
            policy=compaction_policy or CompactionPolicy(),
            read_policy=read_policy or ReadPolicy(),
            clock=clock,
        )

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
        catalog = _catalog(settings)
        if settings.auto_migrate:
            catalog.migrate()
        # A key file is made only for a catalog that holds no wrapped key yet; then the KMS
        # must hold every KEK the catalog needs (a lost key file is a configuration error).
        kms = kms_from_url(
            settings.kms_url,
            endpoint=settings.kms_endpoint,
            create_local=not catalog.keys.keks_in_use(),
        )
        check_keks(catalog, kms)
        return cls(
            catalog=catalog,
            blob_store=blob_store or blob_store_from_url(settings.blob_url),
            kms=kms,
            flush_policy=settings.flush,
            read_policy=settings.read,
            key_cache_policy=settings.key_cache,
            zstd_level=settings.zstd_level,
            typed_parts=settings.parts == "typed",
            pipeline_flushes=pipeline_flushes,
            compaction_policy=settings.compaction,
        )

    def close(self) -> None:
        """Release threads and connections; unflushed frames are dropped (flush first).

        A flush already under way is waited for, so it ends committed or not at all.
        """
        self._ingestor.close()
        self._reader.close()
        self._read_keys.clear()
        self._catalog.dispose()

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
        """Seal and buffer one segment, flushing every buffer that reached a threshold; a
        segment of a deleted replay or project is dropped before it gets a key.

        If a flush failed (in the background or now), its error is raised from this call and its
        frames are back in the buffer: ingesting the same segment again is safe.
        """
        return self._ingestor.ingest(segment)

    def admit(self, segments: Sequence[Segment], *, actor: str) -> Admission:
        """The segments whose replay and project are not deleted (one catalog query for the
        batch); the dropped ones are counted in one audit event by `actor`."""
        return self._ingestor.admit(segments, actor=actor)

    def buffer(self, segment: Segment) -> bool:
        """Seal and buffer one segment without flushing (callers flush themselves); False if it
        was already buffered or its target is deleted. A KMS failure buffers nothing."""
        return self._ingestor.buffer(segment)

    def flush_due(self) -> list[FlushResult]:
        """Write the buffers that reached their size, count or age threshold."""
        return self._ingestor.flush_due()

    def flush(self) -> list[FlushResult]:
        """Write every buffered frame now, waiting for any background flush first."""
        return self._ingestor.flush()

    def discard_buffered(self) -> int:
        """Drop every buffered frame (their messages go back to the queue); how many."""
        return self._ingestor.discard_buffered()

    def subjects(self) -> SubjectHasher:
        """The subject hasher (its key is unwrapped from the catalog on first use)."""
        if self._subjects is None:
            self._subjects = SubjectHasher.load_or_create(self._catalog, self._kms)
        return self._subjects

    def forget_keys(self, project_id: int, replay_id: str | None = None) -> int:
        """Drop this process's plaintext keys of a replay (or of a whole project); returns how
        many went. Call after a shred so this process stops serving or sealing with them."""
        caches: tuple[KeyCache[DataKey] | KeyCache[SealingKey], ...] = (
            self._read_keys,
            self._ingestor.seal_keys,
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
        deletion_id = self._shredder.request(
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
            return self._shredder.status(deletion_id)
        return self.resume_deletion(deletion_id, progress=progress)

    def resume_deletion(
        self,
        deletion_id: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        max_chunks: int | None = None,
    ) -> DeletionStatus:
        """Run (or continue) a recorded deletion to the end, including its overwrite; with
        `max_chunks`, stop after that many chunks of rows (the overwrite runs once all are gone)."""
        status = self._shredder.run(deletion_id, progress=progress, max_chunks=max_chunks)
        if not status.status.final:
            return status
        if status.overwrite_requested and status.overwrite_done_at is None:
            self._overwriter.run(deletion_id=deletion_id)
            status = self._shredder.status(deletion_id)
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
        return self._reader.segments(project_id, replay_id, start=start, stop=stop, only=only)

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
        return self._reader.recording(project_id, replay_id, start=start, stop=stop, only=only)

    def cached_keys(self) -> int:
        """Plaintext data keys this process holds (for reading and for sealing)."""
        return len(self._read_keys) + len(self._ingestor.seal_keys)

    def health(self, *, kms: bool = True) -> dict[str, str | None]:
        """Each backend (catalog, blob_store, kms), and None if it answers, else why not.

        Cheap probes: one indexed catalog query, one GET of an object that does not exist, and
        (with `kms`) the KMS primary version (Cloud KMS: one probe Encrypt).
        """
        probes: dict[str, Callable[[], object]] = {
            "catalog": self._catalog.ping,
            "blob_store": self._probe_blob_store,
        }
        if kms:
            probes["kms"] = self._kms.primary_kek
        found: dict[str, str | None] = {}
        for name, probe in probes.items():
            try:
                probe()
                found[name] = None
            except VaultError as error:
                found[name] = f"{type(error).__name__}: {error}"
        return found

    def _probe_blob_store(self) -> None:
        try:
            self._blob_store.get_range(_PROBE_BLOB, 0, 1)
        except BlobNotFound:
            return  # the store answered: the probe object is meant not to exist

    def stats(self) -> CatalogStats:
        """Catalog totals."""
        return self._catalog.stats()

    # -- audit, reports and keys ---------------------------------------------------------

    def verify_audit(self) -> ChainReport:
        """Recompute the audit chain and check every deletion has its events."""
        return self._catalog.audit_trail.verify()

    def audit_events(self, *, since: datetime | None = None) -> Iterator[AuditRecord]:
        """The audit events in order (from `since` on, if given)."""
        return self._catalog.audit_trail.events(since=since)

    def deletion_report(
        self,
        since: datetime,
        until: datetime,
        *,
        project_id: int | None = None,
        copies: CopyPolicy | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The compliance report of deletions requested in [since, until), as plain data.

        GCS soft delete is stated only for a gs:// store: its bucket's policy, unless `copies`
        declares the window.
        """
        soft_delete: int | None = None
        bucket_policy = getattr(self._blob_store, "soft_delete_seconds", None)
        if callable(bucket_policy):
            declared = copies.soft_delete_days if copies else None
            soft_delete = declared * 86400 if declared is not None else int(bucket_policy())
        return report.build(
            self._catalog,
            self._reader,
            report.Period(since, until),
            project_id=project_id,
            copies=copies,
            soft_delete_seconds=soft_delete,
            now=now,
        )

    def primary_kek(self) -> str:
        """The KMS key version new data keys are wrapped under."""
        return self._kms.primary_kek()

    def key_status(self, *, project_id: int | None = None) -> rewrap.KeyStatus:
        """The primary key version and how many stored keys each version wraps."""
        return rewrap.status(self._catalog, self._kms, project_id=project_id)

    def rewrap_keys(
        self,
        *,
        actor: str,
        project_id: int | None = None,
        chunk_keys: int = rewrap.DEFAULT_CHUNK_KEYS,
        progress: Callable[[int, int], None] | None = None,
    ) -> rewrap.RewrapResult:
        """Re-wrap every stored data key under the primary version (resumable: run it again)."""
        return rewrap.rewrap(
            self._catalog,
            self._kms,
            actor=actor,
            project_id=project_id,
            chunk_keys=chunk_keys,
            progress=progress,
            clock=self._clock,
        )

    def rotate_local_key(self) -> str:
        """Add a new primary version to the local key file; its name."""
        if not isinstance(self._kms, LocalKms):
            raise ConfigError(
                "VAULT_STORE_KMS_URL: key rotation here works on the local key file; for Cloud "
                "KMS create a version and make it primary in Google Cloud (gcloud kms keys "
                "versions create --primary), then re-wrap the stored keys"
            )
        return self._kms.rotate()

    @staticmethod
    def initialize(settings: Settings) -> str:
        """Migrate the catalog and make the local key file if the catalog holds no wrapped key
        yet; check the KMS holds every KEK the catalog needs. Returns the primary KEK."""
        catalog = Catalog(settings.database_url, partition_width=settings.catalog_partition)
        try:
            catalog.migrate()
            kms = kms_from_url(
                settings.kms_url,
                endpoint=settings.kms_endpoint,
                create_local=not catalog.keys.keks_in_use(),
            )
            check_keks(catalog, kms)
            return kms.primary_kek()
        finally:
            catalog.dispose()

    @staticmethod
    def migrate_catalog(settings: Settings) -> None:
        """Bring the catalog schema the settings name to the newest migration."""
        catalog = _catalog(settings)
        try:
            catalog.migrate()
        finally:
            catalog.dispose()

    # -- deletion status, overwrite, gc, retention, catalog maintenance -----------------

    def deletion_status(self, deletion_id: str) -> DeletionStatus:
        """A recorded deletion's status and counts (InvalidInput if there is none)."""
        return self._shredder.status(deletion_id)

    def project_rows(self, project_id: int) -> int:
        """How many range rows a project has: what deleting it will remove."""
        return self._catalog.deletions.project_rows(project_id)

    def run_overwrites(
        self, *, deletion_id: str | None = None, progress: retention.StepProgress | None = None
    ) -> OverwriteResult:
        """Zero every pending overwrite range (or only one deletion's) in its blob; `progress`
        is told (step, done, total) after each blob."""
        return self._overwriter.run(deletion_id=deletion_id, progress=progress)

    def collect_garbage(
        self,
        *,
        grace: timedelta | None = None,
        dry_run: bool = False,
        progress: retention.StepProgress | None = None,
    ) -> gc.GcResult:
        """Delete orphan blobs older than `grace` and fully dead blobs (or, dry, list them);
        `progress` is told (step, done, total) after each blob deleted."""
        return gc.collect(
            self._catalog,
            self._blob_store,
            grace=gc.DEFAULT_GRACE if grace is None else grace,
            dry_run=dry_run,
            clock=self._clock,
            progress=progress,
        )

    def expire(
        self, *, progress: retention.StepProgress | None = None
    ) -> retention.RetentionResult:
        """Delete rows, then blobs (from every store, GCS included), past their retention;
        `progress` is told (step, done, total) after each chunk of rows and each blob."""
        return retention.expire(
            self._catalog, self._blob_store, clock=self._clock, progress=progress
        )

    # -- compaction -------------------------------------------------------------------------

    def compact(
        self,
        *,
        idle_seconds: float | None = None,
        dry_run: bool = False,
        progress: retention.StepProgress | None = None,
    ) -> CompactionResult:
        """Copy finished replays (idle past `idle_seconds`, default the setting's) unchanged into
        compacted blobs and repoint their rows; `progress` is told (step, done, total) after
        each blob. The sources are deleted by `collect_garbage` once nothing live is left."""
        return self._compactor.run(idle_seconds=idle_seconds, dry_run=dry_run, progress=progress)

    def compaction_stats(self) -> CompactionStats:
        """Compacted blobs, and superseded copies still waiting for GC."""
        return self._catalog.compaction.stats()

    def maintain_catalog(
        self, *, ahead_days: int = maintenance.DEFAULT_AHEAD_DAYS, dry_run: bool = False
    ) -> maintenance.MaintenanceReport:
        """Create partitions ahead, drop fully expired ones, forget empty replays, sizes."""
        return maintenance.maintain(
            self._catalog,
            retention_classes=self.retention_classes(),
            ahead_days=ahead_days,
            dry_run=dry_run,
            clock=self._clock,
        )

    def retention_classes(self, *, extra: Iterable[int] = lifecycle.DEFAULT_CLASSES) -> list[int]:
        """Every retention class the catalog has blobs of, plus `extra`."""
        return lifecycle.retention_classes(self._catalog, extra)

    def lifecycle_rules(
        self,
        *,
        extra_days: Iterable[int] = (),
        margin_days: int = lifecycle.DEFAULT_MARGIN_DAYS,
        apply: bool = False,
    ) -> lifecycle.LifecyclePlan:
        """The GCS bucket lifecycle rules expiring blobs per retention class; set if `apply`."""
        return lifecycle.plan(
            self._catalog,
            self._blob_store,
            extra_days=extra_days,
            margin_days=margin_days,
            apply=apply,
        )

    # -- pages, counters and tokens (the read API) ---------------------------------------

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
        return self._reader.plan_page(
            project_id,
            replay_id,
            start=start,
            max_segments=max_segments,
            max_bytes=max_bytes,
            only=only,
        )

    def read_page(self, page: Page) -> Iterator[bytes]:
        """A planned page's merged recording, as chunks of one JSON array."""
        return self._reader.read_page(page)

    def read_segment(
        self,
        project_id: int,
        replay_id: str,
        segment_id: int,
        *,
        only: frozenset[str] | None = None,
    ) -> bytes | None:
        """One segment's events as a JSON array, None if the replay has no such segment."""
        return self._reader.read_segment(project_id, replay_id, segment_id, only=only)

    def replay_page_at(
        self,
        project_id: int,
        replay_id: str,
        *,
        offset: int,
        segments: int,
        only: frozenset[str] | None = None,
    ) -> tuple[Page, bool]:
        """Plan the page of stored segments number `offset` on (counted, not by id), exactly
        `segments` of them unless the replay ends, and whether more follow (ReplayNotFound /
        ReplayShredded)."""
        return self._reader.plan_page_at(
            project_id, replay_id, offset=offset, segments=segments, only=only
        )

    def read_counters(self) -> ReadTotals:
        """What this process's reads have cost so far: GETs, bytes, frames, KMS unwraps."""
        return self._reader.counters.totals()

    def key_cache_stats(self) -> KeyCacheStats:
        """Hits, misses and size of this process's read key cache."""
        return self._reader.key_cache_stats()

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
        return TokenStore(self._catalog.tokens, clock=self._clock)

    # -- video ----------------------------------------------------------------------------

    def read_video(self, project_id: int, replay_id: str, segment_id: int) -> bytes | None:
        """A segment's mobile replay video, byte for byte; None if the replay exists but that
        segment has no video (ReplayNotFound / ReplayShredded as for reads)."""
        return self._reader.read_video(project_id, replay_id, segment_id)


# An object name no blob can have (blobs live under r<days>d/): its GET answers "not found".
_PROBE_BLOB = "vault-store-health-probe"


def _catalog(settings: Settings) -> Catalog:
    timeouts = settings.catalog_timeouts
    return Catalog(
        settings.database_url,
        partition_width=settings.catalog_partition,
        connect_timeout=timeouts.connect_seconds,
        statement_timeout=timeouts.statement_seconds,
        busy_timeout=timeouts.busy_seconds,
    )
