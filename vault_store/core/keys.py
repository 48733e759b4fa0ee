"""Who a data key belongs to, and its wrapped form: the values the Kms port speaks in."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vault_store.core.crypto import length_prefixed

_WRAP_AD_LABEL = b"vault-store dek v1"
_WRAP_AD_HEAD = length_prefixed(_WRAP_AD_LABEL)
_WRAP_AD_PROJECT = struct.Struct(">IQI")


@dataclass(frozen=True, slots=True)
class KeyContext:
    """Whose data key this is; bound as associated data so a wrapped key cannot change owner."""

    project_id: int
    replay_id: str

    def associated_data(self) -> bytes:
        """Length-prefixed (label, project_id, replay_id): the bytes of length_prefixed() over
        them, packed with one precompiled struct (it runs once per new replay key)."""
        replay = self.replay_id.encode("ascii")
        return _WRAP_AD_HEAD + _WRAP_AD_PROJECT.pack(8, self.project_id, len(replay)) + replay


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key encrypted by the KMS, and the name of the key version that did it."""

    ciphertext: bytes
    kek: str

    def __repr__(self) -> str:
        # The ciphertext is a secret's shadow too: keep it out of logs.
        return f"WrappedKey(kek={self.kek!r}, ciphertext=<{len(self.ciphertext)} bytes>)"
