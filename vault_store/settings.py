"""Configuration, read from the environment in this one place."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import platformdirs

from vault_store.core.policies import (
    CompactionPolicy,
    CopyPolicy,
    FlushPolicy,
    KeyCachePolicy,
    ReadPolicy,
)
from vault_store.errors import ConfigError

__all__ = [
    "ApiPolicy",
    "CatalogTimeouts",
    "CopyPolicy",
    "FlushPolicy",
    "KeyCachePolicy",
    "ReadPolicy",
    "Settings",
    "WorkerPolicy",
]

T = TypeVar("T", int, float)


def default_home() -> Path:
    """The per-user data directory (``~/.local/share/vault-store`` on Linux): the same store
    whatever the working directory, unlike a relative default."""
    return Path(platformdirs.user_data_dir("vault-store", appauthor=False))


@dataclass(frozen=True, slots=True)
class ApiPolicy:
    """The read API's Sentry-shaped routes and browser access."""

    # (organization slug, project slug) -> project id, for Sentry's
    # /api/0/projects/{organization_slug}/{project_id_or_slug}/... routes (numeric ids need none).
    project_slugs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # Origins whose pages may call the API from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # The replay viewer's player: an npm-installed rrweb-player package directory served
    # by the API itself (None: the page loads the pinned version from a CDN).
    viewer_assets: Path | None = None


@dataclass(frozen=True, slots=True)
class CatalogTimeouts:
    """How long the catalog database may keep a command waiting before it fails."""

    # PostgreSQL: seconds to establish a connection (TCP, TLS and start-up), so a server that
    # accepts connections but never answers fails fast instead of hanging every command.
    connect_seconds: float = 5.0
    # PostgreSQL: seconds one statement may run (0: no limit). Work is chunked well below this.
    statement_seconds: float = 120.0
    # SQLite: seconds to wait for another process's write lock before "database is locked".
    busy_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """The Celery workers: broker, queues, redelivery and the periodic jobs."""

    broker_url: str | None = None
    # Queues are "<prefix>.ingest", "<prefix>.tasks" and "<prefix>.dead_letter".
    queue_prefix: str = "vault_store"
    # Redis (the tasks queue only: ingest refuses it) redelivers an unacknowledged message only
    # after this long. It must stay above the longest shred, or a running one is redelivered.
    visibility_timeout_seconds: float = 1800.0
    # A message whose segment could not be made durable is sent back this many times, then
    # dead-lettered.
    max_ingest_attempts: int = 5
    # In-process retries of a failed flush before its messages are sent back, the first after
    # this delay, each next one after twice the last.
    flush_retries: int = 3
    flush_retry_delay_seconds: float = 0.5
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    gc_interval_seconds: float = 3600.0
    expire_interval_seconds: float = 3600.0
    overwrite_interval_seconds: float = 600.0
    maintain_interval_seconds: float = 3600.0
    compact_interval_seconds: float = 900.0
    # Bytes of ingest messages a worker process holds unacknowledged: its prefetch window (a
    # count) aims at half of it in messages of the mean size seen; past it, the worker stops
    # consuming the ingest queue (messages already on their way go back to it) until its batches
    # have brought it under half. Bounds resident memory whatever the message sizes.
    max_held_bytes: int = 256 * 1024 * 1024
    # A deletion task works at most this long per delivery, then queues its own continuation:
    # no delivery stays unacknowledged long enough for the broker to redeliver it while it runs.
    deletion_slice_seconds: float = 300.0

    def queue(self, name: str) -> str:
        """The full name of queue `name` (ingest, tasks, dead_letter)."""
        return f"{self.queue_prefix}.{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything vault-store can be told; `from_env` is the only reader of the environment."""

    home: Path
    database_url: str
    blob_url: str
    kms_url: str
    # host:port of another Cloud KMS endpoint (a loopback one: plain-text gRPC, no credentials).
    kms_endpoint: str | None = None
    flush: FlushPolicy = field(default_factory=FlushPolicy)
    read: ReadPolicy = field(default_factory=ReadPolicy)
    key_cache: KeyCachePolicy = field(default_factory=KeyCachePolicy)
    copies: CopyPolicy = field(default_factory=CopyPolicy)
    workers: WorkerPolicy = field(default_factory=WorkerPolicy)
    catalog_timeouts: CatalogTimeouts = field(default_factory=CatalogTimeouts)
    api: ApiPolicy = field(default_factory=ApiPolicy)
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)
    zstd_level: int = 3
    # PostgreSQL range partitions of the catalog: one per "day" or per "week" of expiry.
    catalog_partition: str = "day"
    # "typed": each segment stored as dom/console/network/timeline parts; "off": one part.
    parts: str = "typed"
    auto_migrate: bool = True
    # A bearer token the API's /metrics requires (None: /metrics is open, as on a private port).
    metrics_token: str | None = None
    # Where the demo and benchmarks look for real rrweb recordings (None: search, then synthesize).
    recordings: Path | None = None

    @classmethod
    def embedded(cls, home: Path) -> Settings:
        """The embedded default: SQLite, a local blob directory and a local key file in `home`."""
        home = home.absolute()
        return cls(
            home=home,
            database_url=f"sqlite:///{home / 'catalog.sqlite3'}",
            blob_url=f"file://{home / 'blobs'}",
            kms_url=f"local-kms://{home / 'kek.json'}",
        )

    def missing_home(self) -> Path | None:
        """The home, if it does not exist while the catalog is meant to live there (the embedded
        SQLite file): nothing was ever stored, so a read-only command has nothing to read."""
        if self.home.exists() or self.database_url != Settings.embedded(self.home).database_url:
            return None
        return self.home

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read VAULT_STORE_* variables; unset ones take the embedded defaults under HOME."""
        env = os.environ if env is None else env
        base = cls.embedded(Path(env.get("VAULT_STORE_HOME") or default_home()))
        level = _number(env, "VAULT_STORE_ZSTD_LEVEL", int, 3)
        if not 1 <= level <= 22:
            raise ConfigError("VAULT_STORE_ZSTD_LEVEL: expected 1 to 22")
        workers = WorkerPolicy()  # the defaults of what the environment leaves unset
        timeouts = CatalogTimeouts()
        return cls(
            home=base.home,
            database_url=env.get("VAULT_STORE_DATABASE_URL") or base.database_url,
            blob_url=env.get("VAULT_STORE_BLOB_URL") or base.blob_url,
            kms_url=env.get("VAULT_STORE_KMS_URL") or base.kms_url,
            kms_endpoint=env.get("VAULT_STORE_KMS_ENDPOINT") or None,
            metrics_token=env.get("VAULT_STORE_METRICS_TOKEN") or None,
            flush=FlushPolicy(
                max_bytes=_number(env, "VAULT_STORE_FLUSH_MAX_BYTES", int, 8 * 1024 * 1024),
                max_segments=_number(env, "VAULT_STORE_FLUSH_MAX_SEGMENTS", int, 5000),
                max_age_seconds=_number(env, "VAULT_STORE_FLUSH_MAX_AGE", float, 10.0),
            ),
            read=ReadPolicy(
                gap_bytes=_number(env, "VAULT_STORE_READ_GAP_BYTES", int, 64 * 1024),
                concurrency=_number(env, "VAULT_STORE_READ_CONCURRENCY", int, 8),
            ),
            key_cache=KeyCachePolicy(
                ttl_seconds=_number(env, "VAULT_STORE_KEY_CACHE_TTL", float, 300.0),
                max_uses=_number(env, "VAULT_STORE_KEY_CACHE_MAX_USES", int, 100_000),
            ),
            copies=CopyPolicy(
                # Unset: no such copy exists, and reports list none.
                backup_retention_days=_number(env, "VAULT_STORE_BACKUP_RETENTION_DAYS", int, 0)
                or None,
                kms_destroy_days=_number(env, "VAULT_STORE_KMS_DESTROY_DAYS", int, 0) or None,
                soft_delete_days=_number(env, "VAULT_STORE_SOFT_DELETE_DAYS", int, 0) or None,
            ),
            workers=WorkerPolicy(
                broker_url=env.get("VAULT_STORE_BROKER_URL") or None,
                queue_prefix=env.get("VAULT_STORE_QUEUE_PREFIX") or workers.queue_prefix,
                visibility_timeout_seconds=_number(
                    env,
                    "VAULT_STORE_BROKER_VISIBILITY_TIMEOUT",
                    float,
                    workers.visibility_timeout_seconds,
                ),
                max_ingest_attempts=_number(
                    env, "VAULT_STORE_INGEST_MAX_ATTEMPTS", int, workers.max_ingest_attempts
                ),
                flush_retries=_number(env, "VAULT_STORE_FLUSH_RETRIES", int, workers.flush_retries),
                # 0 is "unset": the metrics are served only on a port the operator chose.
                metrics_port=_number(env, "VAULT_STORE_WORKER_METRICS_PORT", int, 0) or None,
                metrics_address=env.get("VAULT_STORE_WORKER_METRICS_ADDRESS")
                or workers.metrics_address,
                gc_interval_seconds=_number(
                    env, "VAULT_STORE_GC_INTERVAL", float, workers.gc_interval_seconds
                ),
                expire_interval_seconds=_number(
                    env, "VAULT_STORE_EXPIRE_INTERVAL", float, workers.expire_interval_seconds
                ),
                overwrite_interval_seconds=_number(
                    env, "VAULT_STORE_OVERWRITE_INTERVAL", float, workers.overwrite_interval_seconds
                ),
                maintain_interval_seconds=_number(
                    env, "VAULT_STORE_MAINTAIN_INTERVAL", float, workers.maintain_interval_seconds
                ),
                compact_interval_seconds=_number(
                    env, "VAULT_STORE_COMPACT_INTERVAL", float, workers.compact_interval_seconds
                ),
                max_held_bytes=_number(
                    env, "VAULT_STORE_WORKER_MAX_HELD_BYTES", int, workers.max_held_bytes
                ),
                deletion_slice_seconds=_number(
                    env, "VAULT_STORE_DELETION_SLICE", float, workers.deletion_slice_seconds
                ),
            ),
            compaction=_compaction(env),
            catalog_timeouts=CatalogTimeouts(
                connect_seconds=_number(
                    env, "VAULT_STORE_DB_CONNECT_TIMEOUT", float, timeouts.connect_seconds
                ),
                statement_seconds=_number(
                    env,
                    "VAULT_STORE_DB_STATEMENT_TIMEOUT",
                    float,
                    timeouts.statement_seconds,
                    zero=True,
                ),
                busy_seconds=_number(
                    env, "VAULT_STORE_SQLITE_BUSY_TIMEOUT", float, timeouts.busy_seconds
                ),
            ),
            api=ApiPolicy(
                project_slugs=_project_slugs(env, "VAULT_STORE_API_PROJECT_SLUGS"),
                cors_origins=_origins(env, "VAULT_STORE_API_CORS_ORIGINS"),
                viewer_assets=_viewer_assets(env, "VAULT_STORE_VIEWER_ASSETS"),
            ),
            zstd_level=level,
            parts=_choice(env, "VAULT_STORE_PARTS", ("typed", "off"), "typed"),
            catalog_partition=_choice(env, "VAULT_STORE_CATALOG_PARTITION", ("day", "week"), "day"),
            auto_migrate=_flag(env, "VAULT_STORE_AUTO_MIGRATE", True),
            recordings=Path(env["VAULT_STORE_RECORDINGS"])
            if env.get("VAULT_STORE_RECORDINGS")
            else None,
        )


def _compaction(env: Mapping[str, str]) -> CompactionPolicy:
    """Replay compaction: when a replay is finished, and the size of a compacted blob."""
    policy = CompactionPolicy()  # the defaults of what the environment leaves unset
    return CompactionPolicy(
        idle_seconds=_number(env, "VAULT_STORE_COMPACT_IDLE_SECONDS", float, policy.idle_seconds),
        max_replay_seconds=_number(
            env, "VAULT_STORE_COMPACT_MAX_REPLAY_SECONDS", float, policy.max_replay_seconds
        ),
        target_bytes=_number(env, "VAULT_STORE_COMPACT_TARGET_BYTES", int, policy.target_bytes),
    )


def _number(
    env: Mapping[str, str],
    name: str,
    kind: Callable[[str], T],
    default: T,
    *,
    zero: bool = False,
) -> T:
    """A positive number from the environment (or zero, meaning "no limit", if `zero`)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not zero) or value != value:  # value != value: NaN
        expected = "zero or a positive number" if zero else "a positive number"
        raise ConfigError(f"{name}: expected {expected}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


_SLUG = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ORIGIN = re.compile(r"^https?://[^/\s]+$")


def _project_slugs(env: Mapping[str, str], name: str) -> dict[tuple[str, str], int]:
    """``org/project=42,org/other=7`` as {(org, project): id}."""
    found: dict[tuple[str, str], int] = {}
    for entry in filter(None, (item.strip() for item in env.get(name, "").split(","))):
        where, _, number = entry.partition("=")
        organization, _, project = where.strip().partition("/")
        if not (_SLUG.match(organization) and _SLUG.match(project)):
            raise ConfigError(f"{name}: expected org/project=<id> entries, got {entry!r}")
        if not number.strip().isdigit() or int(number) > 2**63 - 1:
            raise ConfigError(f"{name}: {entry!r}: expected a project id (0 to 2**63-1)")
        if (organization, project) in found:
            raise ConfigError(f"{name}: {organization}/{project} is mapped twice")
        found[(organization, project)] = int(number)
    return found


# The files of the rrweb-player package the viewer page loads (the paths the CDN serves too).
VIEWER_ASSET_FILES = ("umd/rrweb-player.js", "dist/style.css")


def _viewer_assets(env: Mapping[str, str], name: str) -> Path | None:
    """An rrweb-player package directory holding the files the viewer loads, or None."""
    value = env.get(name, "").strip()
    if not value:
        return None
    folder = Path(value).absolute()
    missing = [file for file in VIEWER_ASSET_FILES if not (folder / file).is_file()]
    if missing:
        raise ConfigError(
            f"{name}: {folder} is not an rrweb-player package directory (no {missing[0]}); "
            "point it at node_modules/rrweb-player after npm ci in viewer/"
        )
    return folder


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated origins (scheme://host[:port], no path), or ``*`` for any."""
    origins = tuple(filter(None, (item.strip() for item in env.get(name, "").split(","))))
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise ConfigError(
                f"{name}: expected origins like https://app.example.com, got {origin!r}"
            )
    return origins
