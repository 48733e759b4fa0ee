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

from vault_store.catalog import Catalog
from vault_store.catalog.keys import Rewrapped, StoredKey
from vault_store.kms import KeyContext, Kms
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


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The primary version, and how many stored keys each version wraps (what must reach zero
    before disabling one)."""

    primary: str
    rows_by_kek: dict[str, int]


def status(catalog: Catalog, kms: Kms, *, project_id: int | None = None) -> KeyStatus:
    """The primary version and the rows (and, over all projects, secrets) per version."""
    return KeyStatus(kms.primary_kek(), catalog.keys.rows_by_kek(project_id=project_id))


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
    after: tuple[int, str] | None = None
    while True:
        batch = catalog.keys.stale_keys(
            primary, after=after, limit=chunk_keys, project_id=project_id
        )
        if not batch:
            break
        after = (batch[-1].project_id, batch[-1].replay_id)
        with ThreadPoolExecutor(concurrency) as pool:
            # KMS calls are round trips: overlap them (two per key: unwrap, then wrap).
            rewrapped = list(pool.map(lambda key: (key, _rewrap_one(kms, key)), batch))
        chunk_rows = catalog.keys.replace_keys(
            rewrapped, primary=primary, project_id=project_id, actor=actor, at=clock()
        )
        keys += len(batch)
        rows += chunk_rows
        chunks += 1
        if progress is not None:
            progress(keys, rows)
    return RewrapResult(primary, keys, rows, secrets, chunks)


def _rewrap_one(kms: Kms, key: StoredKey) -> Rewrapped:
    return _rewrapped(kms, key.wrapped, KeyContext(key.project_id, key.replay_id))


def _rewrapped(kms: Kms, wrapped: bytes, context: KeyContext) -> Rewrapped:
    new = kms.wrap(kms.unwrap(wrapped, context), context)
    return Rewrapped(new.ciphertext, new.kek)


def _rewrap_secrets(
    catalog: Catalog, kms: Kms, primary: str, actor: str, clock: Callable[[], datetime]
) -> int:
    """The catalog's own wrapped secrets (the subject key) move to the primary too."""
    stale = catalog.keys.stale_secrets(primary)
    if not stale:
        return 0
    rewrapped = [(secret, _rewrapped(kms, secret.wrapped, SUBJECT_KEY_CONTEXT)) for secret in stale]
    catalog.keys.replace_secrets(rewrapped, primary=primary, actor=actor, at=clock())
    return len(stale)
