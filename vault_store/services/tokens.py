"""Bearer tokens of the read API: made once, stored as a hash, scoped to projects and permissions.

A token reads ``vst_<id>_<secret>``. The catalog keeps the id, SHA-256 of the secret, the
projects and the permissions; the secret itself is shown once, when the token is made. Checking
a token looks it up by id and compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from vault_store.catalog import Catalog
from vault_store.catalog.models import ApiToken
from vault_store.errors import InvalidInput

PERMISSIONS = ("read", "delete", "audit")
_PREFIX = "vst"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for."""

    token_id: str
    label: str
    projects: frozenset[int]
    permissions: frozenset[str]

    def may(self, permission: str, project_id: int) -> bool:
        """Whether this token holds `permission` on `project_id`."""
        return permission in self.permissions and project_id in self.projects

    def knows(self, project_id: int) -> bool:
        """Whether the project is this token's at all (else it must look nonexistent)."""
        return project_id in self.projects


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: the secret string (shown once) and what it may do."""

    token: str
    principal: Principal


class TokenStore:
    """Creates, revokes and checks API tokens in the catalog."""

    def __init__(
        self, catalog: Catalog, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._catalog = catalog
        self._clock = clock

    def create(
        self, projects: Collection[int], permissions: Collection[str], *, label: str = ""
    ) -> IssuedToken:
        """A new token for `projects` with `permissions`."""
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown or not permissions:
            raise InvalidInput("--scope", f"expected some of {', '.join(PERMISSIONS)}")
        if not projects:
            raise InvalidInput("--project", "a token needs at least one project")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._catalog.transaction("tokens") as conn:
            conn.execute(
                insert(ApiToken).values(
                    id=token_id,
                    secret_hash=_hash(secret),
                    label=label,
                    projects=json.dumps(sorted(set(projects))),
                    scopes=",".join(sorted(set(permissions))),
                    created_at=self._clock(),
                )
            )
        principal = Principal(token_id, label, frozenset(projects), frozenset(permissions))
        return IssuedToken(f"{_PREFIX}_{token_id}_{secret}", principal)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id; False if there is no such live token."""
        with self._catalog.transaction("tokens") as conn:
            changed = conn.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            ).rowcount
        return bool(changed)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None for anything else."""
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != _PREFIX or len(token_id) != 12 or not secret:
            return None
        with self._catalog.connection("tokens") as conn:
            row = conn.execute(
                select(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            ).one_or_none()
        # Compare even when there is no row, so timing does not tell which ids exist.
        stored = bytes(row.secret_hash) if row is not None else bytes(32)
        if not hmac.compare_digest(_hash(secret), stored) or row is None:
            return None
        return Principal(
            row.id,
            row.label,
            frozenset(json.loads(row.projects)),
            frozenset(row.scopes.split(",")),
        )

    def list(self) -> list[dict[str, object]]:
        """Every token's id, label, projects, permissions and state (never a secret)."""
        with self._catalog.connection("tokens") as conn:
            rows = conn.execute(select(ApiToken).order_by(ApiToken.created_at)).all()
        return [
            {
                "id": row.id,
                "label": row.label,
                "projects": json.loads(row.projects),
                "scopes": row.scopes.split(","),
                "revoked": row.revoked_at is not None,
            }
            for row in rows
        ]


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
