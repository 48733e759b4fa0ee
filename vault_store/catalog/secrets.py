"""The catalog's own secrets, stored only wrapped by the KMS (the subject key)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from vault_store.catalog.models import CatalogSecret

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog


class SecretRepository:
    """Wrapped secrets by name: read one, store one unless it exists."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def wrapped(self, name: str) -> bytes | None:
        """The wrapped value of the secret `name`, or None if there is none yet."""
        with self._catalog.connection("subjects") as conn:
            row = conn.execute(
                select(CatalogSecret.wrapped).where(CatalogSecret.name == name)
            ).first()
        return bytes(row[0]) if row else None

    def create(self, name: str, *, wrapped: bytes, kek: str, at: datetime) -> bytes:
        """Store the secret unless one of that name exists; the stored value (first one wins)."""
        with self._catalog.transaction("subjects") as conn:
            conn.execute(
                self._catalog.insert_ignoring_conflicts(CatalogSecret).values(
                    name=name, wrapped=wrapped, kek=kek, created_at=at
                )
            )
        stored = self.wrapped(name)
        assert stored is not None  # secrets are never deleted
        return stored
