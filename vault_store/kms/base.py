"""The Kms port: wrap and unwrap per-replay data keys under a key-encryption key."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from vault_store.crypto import DataKey, length_prefixed

_WRAP_AD_LABEL = b"vault-store dek v1"


@dataclass(frozen=True, slots=True)
class KeyContext:
    """Whose data key this is; bound as associated data so a wrapped key cannot change owner."""

    project_id: int
    replay_id: str

    def associated_data(self) -> bytes:
        """Length-prefixed (label, project_id, replay_id)."""
        return length_prefixed(
            _WRAP_AD_LABEL, struct.pack(">Q", self.project_id), self.replay_id.encode("ascii")
        )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted by the KMS, and the name of the key version that did it."""

    ciphertext: bytes
    kek: str

    def __repr__(self) -> str:
        # The ciphertext is a secret's shadow too: keep it out of logs.
        return f"WrappedKey(kek={self.kek!r}, ciphertext=<{len(self.ciphertext)} bytes>)"


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
