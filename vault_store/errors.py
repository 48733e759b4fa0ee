"""The one exception tree of vault-store; every vendor error is mapped into it at the adapter edge.

    VaultError
    ├── ConfigError          bad configuration (names the setting)
    ├── InvalidInput         bad message or request (says what and where)
    ├── ReplayNotFound       no such replay (or not yours)
    ├── ReplayShredded       the replay existed and was deleted
    ├── CorruptData          stored bytes or keys failed a check (vague on purpose)
    │   └── KeyGone          the KMS key version that wrapped a key is destroyed or disabled
    └── BackendError         a blob store, KMS or catalog operation failed (.backend, .op)
        ├── BackendUnavailable   transient; the only retryable error
        ├── AlreadyExists        create-only write found the object present
        ├── GenerationMismatch   a conditional replace lost a race; read again and retry
        └── BlobNotFound         the blob is not in the store

Messages never carry key material or recording content: only ids, field names and counts.
"""

from __future__ import annotations


class VaultError(Exception):
    """Root of every error vault-store raises on purpose."""


class ConfigError(VaultError):
    """The configuration is unusable; the message names the setting."""


class InvalidInput(VaultError):
    """A message or request is malformed; `field` names where."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ReplayNotFound(VaultError):
    """The replay has no stored segments (or the caller may not know it exists)."""


class ReplayShredded(VaultError):
    """The replay was deleted; its keys are gone."""


class CorruptData(VaultError):
    """Stored data failed authentication or a consistency check."""


class KeyGone(CorruptData):
    """The KMS key version needed to unwrap a data key is destroyed or disabled."""


class BackendError(VaultError):
    """A backend operation failed; `backend` and `op` say which."""

    def __init__(self, message: str, *, backend: str, op: str) -> None:
        super().__init__(f"{backend} {op}: {message}")
        self.backend = backend
        self.op = op


class BackendUnavailable(BackendError):
    """A transient backend failure; retrying later may succeed."""


class AlreadyExists(BackendError):
    """A create-only write found the object already present."""


class GenerationMismatch(BackendError):
    """A replace's generation precondition failed: someone rewrote the blob first."""


class BlobNotFound(BackendError):
    """The named blob does not exist in the store."""
