"""Which key version wraps each stored data key, and moving wrapped keys to another version."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select, tuple_, update

from vault_store.catalog import audit
from vault_store.catalog.models import CatalogSecret, KekInUse, RecordingByteRange

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from vault_store.catalog.catalog import Catalog


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One distinct wrapped data key of a replay (a replay has one per ingest process)."""

    project_id: int
    replay_id: str
    wrapped: bytes

    def __repr__(self) -> str:
        return f"StoredKey(project_id={self.project_id}, replay_id={self.replay_id!r})"


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One of the catalog's own wrapped secrets (the subject key)."""

    name: str
    wrapped: bytes

    def __repr__(self) -> str:
        return f"StoredSecret(name={self.name!r})"


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """The same key wrapped again, under key version `kek`."""

    ciphertext: bytes
    kek: str

    def __repr__(self) -> str:
        return f"Rewrapped(kek={self.kek!r})"


class KeyRepository:
    """Wrapped keys by key version: count them, page through stale ones, replace them."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def keks_in_use(self) -> dict[str, bytes | None]:
        """Every KEK some row or secret is wrapped under, with its recorded fingerprint."""
        with self._catalog.connection("keys") as conn:
            found = {
                str(kek): None if fingerprint is None else bytes(fingerprint)
                for kek, fingerprint in conn.execute(select(KekInUse.kek, KekInUse.fingerprint))
            }
            for kek in conn.execute(select(CatalogSecret.kek).distinct()).scalars():
                found.setdefault(str(kek), None)
        return found

    def record_kek(self, kek: str, fingerprint: bytes | None, *, at: datetime) -> None:
        """Record that `kek` is (about to be) used, and its fingerprint if none is recorded."""
        with self._catalog.transaction("keys") as conn:
            conn.execute(
                self._catalog.insert_ignoring_conflicts(KekInUse).values(
                    kek=kek, first_used_at=at, fingerprint=fingerprint
                )
            )
            if fingerprint is not None:
                conn.execute(
                    update(KekInUse)
                    .where(KekInUse.kek == kek, KekInUse.fingerprint.is_(None))
                    .values(fingerprint=fingerprint)
                )

    def rows_by_kek(self, *, project_id: int | None = None) -> dict[str, int]:
        """Range rows (and, over all projects, catalog secrets) each key version wraps."""
        query = select(RecordingByteRange.kek, func.count()).group_by(RecordingByteRange.kek)
        if project_id is not None:
            query = query.where(RecordingByteRange.project_id == project_id)
        with self._catalog.connection("keys status") as conn:
            counts = {str(kek): int(count) for kek, count in conn.execute(query)}
            secrets = conn.execute(
                select(CatalogSecret.kek, func.count()).group_by(CatalogSecret.kek)
            ).all()
        if project_id is None:
            for kek, count in secrets:
                counts[str(kek)] = counts.get(str(kek), 0) + int(count)
        return counts

    def stale_keys(
        self,
        primary: str,
        *,
        after: tuple[int, str] | None,
        limit: int,
        project_id: int | None = None,
    ) -> list[StoredKey]:
        """Every wrapped key not under `primary` of the next `limit` replays after `after`.

        Walking (project_id, replay_id) forward rides the primary-key index instead of scanning
        the whole table for every chunk; a replay may carry several wrapped keys (one per ingest
        process), and all of them are taken with their replay so the cursor never skips one.
        """
        table = RecordingByteRange
        replay = tuple_(table.project_id, table.replay_id)
        stale = [table.kek != primary]
        if after is not None:
            stale.append(replay > tuple_(*after))
        if project_id is not None:
            stale.append(table.project_id == project_id)
        with self._catalog.connection("keys rewrap") as conn:
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
        return [StoredKey(int(p), str(r), bytes(w)) for p, r, w in found]

    def replace_keys(
        self,
        keys: Sequence[tuple[StoredKey, Rewrapped]],
        *,
        primary: str,
        project_id: int | None,
        actor: str,
        at: datetime,
    ) -> int:
        """Put each replacement on every row carrying the old wrapped key, with its audit event,
        in one transaction; how many rows changed."""
        rows = 0
        with self._catalog.transaction("keys rewrap") as conn:
            record_keks(conn, self._catalog, {new.kek for _, new in keys}, at)
            for key, new in keys:
                # Rows shredded meanwhile are simply gone: the update then touches nothing.
                rows += conn.execute(
                    update(RecordingByteRange)
                    .where(
                        RecordingByteRange.project_id == key.project_id,
                        RecordingByteRange.replay_id == key.replay_id,
                        RecordingByteRange.wrapped_dek == key.wrapped,
                    )
                    .values(wrapped_dek=new.ciphertext, kek=new.kek)
                ).rowcount
            audit.append(
                conn,
                kind="keys.rewrap",
                actor=actor,
                at=at,
                details={
                    "primary": primary,
                    "keys": len(keys),
                    "rows": rows,
                    "project_id": project_id,
                },
            )
        return rows

    def stale_secrets(self, primary: str) -> list[StoredSecret]:
        """The catalog's wrapped secrets not under `primary`."""
        with self._catalog.connection("keys rewrap") as conn:
            found = conn.execute(
                select(CatalogSecret.name, CatalogSecret.wrapped).where(
                    CatalogSecret.kek != primary
                )
            ).all()
        return [StoredSecret(str(name), bytes(wrapped)) for name, wrapped in found]

    def replace_secrets(
        self,
        secrets: Sequence[tuple[StoredSecret, Rewrapped]],
        *,
        primary: str,
        actor: str,
        at: datetime,
    ) -> None:
        """Put each replacement on its secret (if still the old value), with its audit event,
        in one transaction."""
        with self._catalog.transaction("keys rewrap") as conn:
            record_keks(conn, self._catalog, {new.kek for _, new in secrets}, at)
            for secret, new in secrets:
                conn.execute(
                    update(CatalogSecret)
                    .where(
                        CatalogSecret.name == secret.name, CatalogSecret.wrapped == secret.wrapped
                    )
                    .values(wrapped=new.ciphertext, kek=new.kek)
                )
            audit.append(
                conn,
                kind="keys.rewrap",
                actor=actor,
                at=at,
                details={"primary": primary, "secrets": len(secrets)},
            )


def record_keks(conn: Connection, catalog: Catalog, keks: Collection[str], at: datetime) -> None:
    """In the caller's transaction: list these KEKs as in use (rows are about to need them)."""
    if keks:
        conn.execute(
            catalog.insert_ignoring_conflicts(KekInUse),
            [{"kek": kek, "first_used_at": at, "fingerprint": None} for kek in sorted(keks)],
        )
