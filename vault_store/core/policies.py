"""Value objects that tune flushing, reading, key caching and the copy bounds of reports."""

from __future__ import annotations

from dataclasses import dataclass

from vault_store.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushPolicy:
    """When a retention class's buffer becomes a blob: size, segment count or age of the oldest.

    A count or age of None is no such limit: a caller that decides its own batches (the Celery
    workers) leaves only the byte limit automatic.
    """

    max_bytes: int = 8 * 1024 * 1024
    max_segments: int | None = 5000
    max_age_seconds: float | None = 10.0

    def __post_init__(self) -> None:
        if (
            self.max_bytes < 1
            or (self.max_segments is not None and self.max_segments < 1)
            or (self.max_age_seconds is not None and self.max_age_seconds <= 0)
        ):
            raise ConfigError("flush thresholds must be positive")

    @classmethod
    def bytes_only(cls, max_bytes: int) -> FlushPolicy:
        """Flush a buffer only when it reaches `max_bytes`; no count or age limit."""
        return cls(max_bytes=max_bytes, max_segments=None, max_age_seconds=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadPolicy:
    """How reads fetch: merge ranges closer than `gap_bytes`, fetch `concurrency` at once."""

    gap_bytes: int = 64 * 1024
    max_fetch_bytes: int = 32 * 1024 * 1024
    concurrency: int = 8
    page_segments: int = 50

    def __post_init__(self) -> None:
        if self.gap_bytes < 0 or self.concurrency < 1 or self.page_segments < 1:
            raise ConfigError("read settings must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyCachePolicy:
    """Plaintext data keys stay in memory at most `ttl_seconds` and `max_uses` uses."""

    ttl_seconds: float = 300.0
    max_uses: int = 100_000
    max_entries: int = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyPolicy:
    """Copies outside the live catalog and store that may outlive a deletion, as the operator
    declares them (for reports); None: there is no such copy, and a report lists none.

    Catalog backups hold wrapped keys until they expire; a KMS key version whose destruction the
    operator has scheduled is gone that many days after the deletion; a gs:// store's soft delete
    window is read from the bucket, unless `soft_delete_days` states it.
    """

    backup_retention_days: int | None = None
    kms_destroy_days: int | None = None
    soft_delete_days: int | None = None
    deadline_days: int = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionPolicy:
    """When a replay is finished, and how compacted blobs are packed.

    A replay is finished once no row came for `idle_seconds`, or its first row is older than
    `max_replay_seconds` (the SDK stops a replay at 60 minutes). A compacted blob holds replays
    of one retention class up to `target_bytes` (a replay is never split), whose rows' expiries
    lie within `max_expiry_spread_seconds` of each other: the blob goes when its last row
    expires, so no frame outlives its own expiry by more than that, which stays inside the
    lifecycle rules' one-day margin (half of it, leaving the other half for `expire`).
    """

    idle_seconds: float = 1800.0
    max_replay_seconds: float = 3900.0
    target_bytes: int = 128 * 1024 * 1024
    max_expiry_spread_seconds: float = 12 * 3600.0
    max_replays_per_run: int = 20_000

    def __post_init__(self) -> None:
        if (
            self.idle_seconds < 0
            or self.max_replay_seconds < 0
            or self.target_bytes < 1
            or self.max_expiry_spread_seconds < 0
            or self.max_replays_per_run < 1
        ):
            raise ConfigError("compaction settings must be positive")
