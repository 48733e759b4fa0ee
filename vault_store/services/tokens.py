"""Bearer tokens of the read API: made once, stored as a hash, scoped to projects and permissions.

A token reads ``vst_<id>_<secret>``. The catalog keeps the id, SHA-256 of the secret, the
projects and the permissions; the secret itself is shown once, when the token is made. Checking
a token looks it up by id and compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from vault_store.catalog.tokens import TokenRecord, TokenRepository
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


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token list shows of one token (never its secret nor its hash)."""

    id: str
    label: str
    projects: tuple[int, ...]
    scopes: tuple[str, ...]
    revoked: bool

    def as_dict(self) -> dict[str, object]:
        """The JSON form of `vault-store token list --json`."""
        return {
            "id": self.id,
            "label": self.label,
            "projects": list(self.projects),
            "scopes": list(self.scopes),
            "revoked": self.revoked,
        }


class TokenStore:
    """Creates, revokes and checks API tokens; the catalog keeps only their hashes."""

    def __init__(
        self,
        tokens: TokenRepository,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tokens = tokens
        self._clock = clock

    def create(
        self, projects: Collection[int], permissions: Collection[str], *, label: str = ""
    ) -> IssuedToken:
        """A new token for `projects` with `permissions`."""
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown or not permissions:
            raise InvalidInput("permissions", f"expected some of {', '.join(PERMISSIONS)}")
        if not projects:
            raise InvalidInput("projects", "a token needs at least one project")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self._tokens.add(
            TokenRecord(
                id=token_id,
                secret_hash=_hash(secret),
                label=label,
                projects=tuple(sorted(set(projects))),
                scopes=tuple(sorted(set(permissions))),
                created_at=self._clock(),
            )
        )
        principal = Principal(token_id, label, frozenset(projects), frozenset(permissions))
        return IssuedToken(f"{_PREFIX}_{token_id}_{secret}", principal)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id; False if there is no such live token."""
        return self._tokens.revoke(token_id, at=self._clock())

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None for anything else."""
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != _PREFIX or len(token_id) != 12 or not secret:
            return None
        found = self._tokens.live(token_id)
        # Compare even when there is no row, so timing does not tell which ids exist.
        stored = found.secret_hash if found is not None else bytes(32)
        if not hmac.compare_digest(_hash(secret), stored) or found is None:
            return None
        return Principal(found.id, found.label, frozenset(found.projects), frozenset(found.scopes))

    def list(self) -> list[TokenInfo]:
        """Every token's id, label, projects, permissions and state (never a secret)."""
        return [
            TokenInfo(
                id=record.id,
                label=record.label,
                projects=record.projects,
                scopes=record.scopes,
                revoked=record.revoked_at is not None,
            )
            for record in self._tokens.all()
        ]


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
