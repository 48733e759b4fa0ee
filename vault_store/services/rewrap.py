"""Key rotation: re-wrap every stored data key under the KMS's primary version.

After a KEK rotation new keys are wrapped under the new version, but rows written before still
need the old one. This moves them, one chunk of distinct wrapped keys per transaction: each key
is unwrapped once, wrapped under the primary, and every row carrying it is updated, with an
audit event in the same transaction. Progress is the data itself (rows whose `kek` is not the
primary), so an interrupted run is resumed by running it again; afterwards the old version can
be disabled. The DEK never changes, so frames are not touched and key checks still hold.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, select, tuple_, update

from vault_store.catalog import Catalog, audit
from vault_store.catalog.models import CatalogSecret, RecordingByteRange
from vault_store.kms import KeyContext, Kms, WrappedKey
from vault_store.services.subjects import SUBJECT_KEY_CONTEXT

DEFAULT_CHUNK_KEYS = 500


@dataclass(frozen=True, slots=True)
class RewrapResult:
    """What a rewrap run moved to the primary version."""

    primary: str
    keys_rewrapped: int
    rows_updated: int
    secrets_rewrapped: int
    chunks: int


def rows_by_kek(catalog: Catalog, *, project_id: int | None = None) -> dict[str, int]:
    """How many range rows each key version wraps (what must reach zero before disabling one)."""
    query = select(RecordingByteRange.kek, func.count()).group_by(RecordingByteRange.kek)
    if project_id is not None:
        query = query.where(RecordingByteRange.project_id == project_id)
    with catalog.connection("keys status") as conn:
        counts = {str(kek): int(count) for kek, count in conn.execute(query)}
        secrets = conn.execute(
            select(CatalogSecret.kek, func.count()).group_by(CatalogSecret.kek)
        ).all()
    if project_id is None:
        for kek, count in secrets:
            counts[str(kek)] = counts.get(str(kek), 0) + int(count)
    return counts


def rewrap(
    catalog: Catalog,
    kms: Kms,
    *,
    actor: str,
    project_id: int | None = None,
    chunk_keys: int = DEFAULT_CHUNK_KEYS,
    concurrency: int = 8,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RewrapResult:
    """Re-wrap every data key not under the primary version; `progress(keys, rows)` per chunk."""
    primary = kms.primary_kek()
    keys = rows = chunks = 0
    secrets = 0 if project_id is not None else _rewrap_secrets(catalog, kms, primary, actor, clock)
    after: tuple[int, str] = (-1, "")
    while True:
        batch = _next_keys(catalog, primary, project_id, after, chunk_keys)
        if not batch:
            break
        after = (batch[-1][0], batch[-1][1])
        chunk_rows = 0
        with ThreadPoolExecutor(concurrency) as pool:
            # KMS calls are round trips: overlap them (two per key: unwrap, then wrap).
            rewrapped = list(pool.map(lambda key: (*key, _rewrap_one(kms, *key)), batch))
        with catalog.transaction("keys rewrap") as conn:
            for project, replay, old, new in rewrapped:
                # Rows shredded meanwhile are simply gone: the update then touches nothing.
                chunk_rows += conn.execute(
                    update(RecordingByteRange)
                    .where(
                        and_(
                            RecordingByteRange.project_id == project,
                            RecordingByteRange.replay_id == replay,
                            RecordingByteRange.wrapped_dek == old,
                        )
                    )
                    .values(wrapped_dek=new.ciphertext, kek=new.kek)
                ).rowcount
            audit.append(
                conn,
                kind="keys.rewrap",
                actor=actor,
                at=clock(),
                details={
                    "primary": primary,
                    "keys": len(batch),
                    "rows": chunk_rows,
                    "project_id": project_id,
                },
            )
        keys += len(batch)
        rows += chunk_rows
        chunks += 1
        if progress is not None:
            progress(keys, rows)
    return RewrapResult(primary, keys, rows, secrets, chunks)


def _rewrap_one(kms: Kms, project_id: int, replay_id: str, wrapped: bytes) -> WrappedKey:
    context = KeyContext(project_id, replay_id)
    return kms.wrap(kms.unwrap(wrapped, context), context)


def _next_keys(
    catalog: Catalog,
    primary: str,
    project_id: int | None,
    after: tuple[int, str],
    limit: int,
) -> list[tuple[int, str, bytes]]:
    """Every wrapped key not under `primary` of the next `limit` replays after `after`.

    Walking (project_id, replay_id) forward rides the primary-key index instead of scanning the
    whole table for every chunk; a replay may carry several wrapped keys (one per ingest
    process), and all of them are taken with their replay so the cursor never skips one.
    """
    table = RecordingByteRange
    replay = tuple_(table.project_id, table.replay_id)
    stale = [table.kek != primary, replay > tuple_(*after)]
    if project_id is not None:
        stale.append(table.project_id == project_id)
    with catalog.connection("keys rewrap") as conn:
        last = conn.execute(
            select(table.project_id, table.replay_id)
            .where(*stale)
            .distinct()
            .order_by(table.project_id, table.replay_id)
            .offset(limit - 1)
            .limit(1)
        ).first()
        query = select(table.project_id, table.replay_id, table.wrapped_dek).where(*stale)
        if last is not None:
            query = query.where(replay <= tuple_(*last))
        found = conn.execute(query.distinct().order_by(table.project_id, table.replay_id)).all()
    return [(int(p), str(r), bytes(w)) for p, r, w in found]


def _rewrap_secrets(
    catalog: Catalog, kms: Kms, primary: str, actor: str, clock: Callable[[], datetime]
) -> int:
    """The catalog's own wrapped secrets (the subject key) move to the primary too."""
    with catalog.connection("keys rewrap") as conn:
        stale = conn.execute(
            select(CatalogSecret.name, CatalogSecret.wrapped).where(CatalogSecret.kek != primary)
        ).all()
    if not stale:
        return 0
    with catalog.transaction("keys rewrap") as conn:
        for name, wrapped in stale:
            new = kms.wrap(kms.unwrap(bytes(wrapped), SUBJECT_KEY_CONTEXT), SUBJECT_KEY_CONTEXT)
            conn.execute(
                update(CatalogSecret)
                .where(CatalogSecret.name == name, CatalogSecret.wrapped == wrapped)
                .values(wrapped=new.ciphertext, kek=new.kek)
            )
        audit.append(
            conn,
            kind="keys.rewrap",
            actor=actor,
            at=clock(),
            details={"primary": primary, "secrets": len(stale)},
        )
    return len(stale)
