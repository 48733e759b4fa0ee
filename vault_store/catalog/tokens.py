"""API tokens in the catalog: one row per token, holding a hash of its secret, never the secret."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from vault_store.catalog.models import ApiToken
from vault_store.catalog.records import as_utc

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog

_OP = "tokens"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One api_token row: projects and scopes in their stored (sorted) order."""

    id: str
    # Not a secret, but nothing gains from printing it.
    secret_hash: bytes = field(repr=False)
    label: str
    projects: tuple[int, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


class TokenRepository:
    """Stores, revokes and looks up API tokens."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def add(self, token: TokenRecord) -> None:
        """Insert a new token."""
        with self._catalog.transaction(_OP) as conn:
            conn.execute(
                insert(ApiToken).values(
                    id=token.id,
                    secret_hash=token.secret_hash,
                    label=token.label,
                    projects=json.dumps(list(token.projects)),
                    scopes=",".join(token.scopes),
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                )
            )

    def revoke(self, token_id: str, *, at: datetime) -> bool:
        """Mark a live token revoked at `at`; False if there is no such live token."""
        with self._catalog.transaction(_OP) as conn:
            changed = conn.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=at)
            ).rowcount
        return bool(changed)

    def live(self, token_id: str) -> TokenRecord | None:
        """The unrevoked token with this id, or None."""
        with self._catalog.connection(_OP) as conn:
            row = conn.execute(
                select(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            ).one_or_none()
        return _record(row) if row is not None else None

    def all(self) -> list[TokenRecord]:
        """Every token, revoked or not, oldest first."""
        with self._catalog.connection(_OP) as conn:
            rows = conn.execute(select(ApiToken).order_by(ApiToken.created_at)).all()
        return [_record(row) for row in rows]


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        secret_hash=bytes(row.secret_hash),
        label=row.label,
        projects=tuple(int(project) for project in json.loads(row.projects)),
        scopes=tuple(row.scopes.split(",")),
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
    )
