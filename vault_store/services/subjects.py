"""The subject index: keyed hashes of the user identifiers in a replay event, never clear text.

`delete user` must find every replay of a person without the catalog storing who they are. Each
identifier (user id, email, username) is stored as HMAC-SHA256(subject key, identifier). The
subject key is a random secret kept in the catalog only wrapped by the KMS, so a catalog reader
(or a backup) cannot test guessed emails against the index.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson

from vault_store.catalog import Catalog
from vault_store.core.crypto import DataKey
from vault_store.kms import KeyContext, Kms

# Which identifiers of the event's `user` object are indexed.
USER_FIELDS = ("id", "email", "username")
SECRET_NAME = "subject-hmac-key"  # noqa: S105 (the row name, not a secret)
# Project 0 is never a real project: the subject key's wrapping context cannot be a replay's.
SUBJECT_KEY_CONTEXT = KeyContext(0, "0" * 32)


def normalize(identifier: str) -> str:
    """Identifiers compare trimmed and, for emails, case-insensitively."""
    identifier = identifier.strip()
    return identifier.lower() if "@" in identifier else identifier


def identifiers(replay_event: bytes | None) -> set[str]:
    """User id, email and username in a replay event; an unreadable event yields none."""
    if not replay_event:
        return set()
    try:
        event = orjson.loads(replay_event)
    except orjson.JSONDecodeError:
        return set()
    user = event.get("user") if isinstance(event, dict) else None
    if not isinstance(user, dict):
        return set()
    found = set()
    for field in USER_FIELDS:
        value = user.get(field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            found.add(normalize(str(value)))
    return found


class SubjectHasher:
    """Keyed hashing of identifiers under the catalog's subject key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def load_or_create(cls, catalog: Catalog, kms: Kms) -> SubjectHasher:
        """Unwrap the catalog's subject key, creating it on first use (one wins a race)."""
        stored = catalog.secrets.wrapped(SECRET_NAME)
        if stored is None:
            wrapped = kms.wrap(DataKey.generate(), SUBJECT_KEY_CONTEXT)
            # If another process stored its key first, ours is dropped and we use theirs.
            stored = catalog.secrets.create(
                SECRET_NAME, wrapped=wrapped.ciphertext, kek=wrapped.kek, at=datetime.now(UTC)
            )
        return cls(kms.unwrap(stored, SUBJECT_KEY_CONTEXT).reveal())

    def hash(self, identifier: str) -> bytes:
        """The index value of one identifier."""
        return hmac.new(self._key, normalize(identifier).encode(), hashlib.sha256).digest()

    def hashes(self, replay_event: bytes | None) -> frozenset[bytes]:
        """Index values of every identifier in a replay event."""
        return frozenset(self.hash(value) for value in identifiers(replay_event))

    def __repr__(self) -> str:
        return "SubjectHasher(<redacted>)"
