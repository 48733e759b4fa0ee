"""The Kms port: wrap and unwrap per-replay data keys under a key-encryption key."""

from __future__ import annotations

from typing import Protocol

from vault_store.core.crypto import DataKey
from vault_store.core.keys import KeyContext, WrappedKey

__all__ = ["KeyContext", "Kms", "WrappedKey"]


class Kms(Protocol):
    """Wraps data keys under a KEK; unwraps with whichever version wrapped them."""

    def wrap(self, key: DataKey, context: KeyContext) -> WrappedKey:
        """Encrypt `key` with `context` as associated data under the primary KEK version."""
        ...

    def unwrap(self, ciphertext: bytes, context: KeyContext) -> DataKey:
        """Decrypt a wrapped key; CorruptData if it does not belong to `context`."""
        ...

    def primary_kek(self) -> str:
        """The name of the version new keys are wrapped under."""
        ...
