"""Data keys and the sealed frame: AES-256-GCM over zstd(segment), bound to its logical identity.

Frame layout (one per segment part, stored contiguously in a blob)::

    version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext of zstd(segment) | tag (16 bytes)

The associated data is a length-prefixed encoding of (format version, project_id, replay_id,
segment_id, part), so a frame served at another row, or as another replay's segment, fails
authentication. The blob path and offset are deliberately not bound: frames may be moved.

AES-GCM is not key-committing, so each row also carries
``key_check = HMAC-SHA256(DEK, "vault-store key-check v1")``, checked before any decryption.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault_store.core import codec
from vault_store.errors import CorruptData

FRAME_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
FRAME_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
DEFAULT_PART = "recording"
_KEY_CHECK_LABEL = b"vault-store key-check v1"
_FRAME_AD_LABEL = b"vault-store frame"
# The frame's associated data in three pieces: the label's field (_FRAME_AD_HEAD, below
# length_prefixed), then (version, project_id, the replay id's length) and (segment_id, the
# part's length), each field after its length.
_FRAME_AD_PROJECT = struct.Struct(">IBIQI")
_FRAME_AD_SEGMENT = struct.Struct(">IQI")
_VERSION_BYTE = bytes([FRAME_VERSION])


class DataKey:
    """A plaintext 256-bit data key; it never shows its bytes in repr, str or a pickle."""

    __slots__ = ("_aead", "_check", "_material")

    def __init__(self, material: bytes) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError("a data key is exactly 32 bytes")
        self._material = bytes(material)
        self._aead = AESGCM(self._material)
        # The commitment is a function of the key alone: computed once, compared per row.
        self._check = hmac.digest(self._material, _KEY_CHECK_LABEL, "sha256")

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = os.urandom) -> DataKey:
        """A fresh random key."""
        return cls(random_bytes(KEY_BYTES))

    def reveal(self) -> bytes:
        """The raw bytes, for wrapping by a KMS only."""
        return self._material

    def key_check(self) -> bytes:
        """The 32-byte commitment stored on each row sealed by this key."""
        return self._check

    def matches(self, key_check: bytes) -> bool:
        """Whether `key_check` commits to this key (constant-time)."""
        return hmac.compare_digest(self.key_check(), key_check)

    @property
    def aead(self) -> AESGCM:
        """The AES-GCM cipher under this key (built once per key)."""
        return self._aead

    def __repr__(self) -> str:
        return "DataKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a DataKey cannot be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self.key_check())


@dataclass(frozen=True, slots=True)
class FrameIdentity:
    """What a frame is: the fields bound into its associated data."""

    project_id: int
    replay_id: str
    segment_id: int
    part: str = DEFAULT_PART

    def associated_data(self, version: int = FRAME_VERSION) -> bytes:
        """Length-prefixed, unambiguous encoding of the identity and format version: the bytes
        of length_prefixed(label, version, project_id, replay_id, segment_id, part), packed
        with two precompiled structs (it runs once per sealed and per opened frame)."""
        replay = self.replay_id.encode("ascii")
        part = self.part.encode("utf-8")
        return b"".join(
            (
                _FRAME_AD_HEAD,
                _FRAME_AD_PROJECT.pack(1, version, 8, self.project_id, len(replay)),
                replay,
                _FRAME_AD_SEGMENT.pack(8, self.segment_id, len(part)),
                part,
            )
        )


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate fields, each preceded by its 4-byte big-endian length."""
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


_FRAME_AD_HEAD = length_prefixed(_FRAME_AD_LABEL)


def seal(
    segment: bytes,
    key: DataKey,
    identity: FrameIdentity,
    *,
    level: int = codec.DEFAULT_LEVEL,
    nonce: bytes | None = None,
) -> bytes:
    """Compress and encrypt one segment into a frame (a random nonce unless one is given)."""
    return b"".join(seal_parts(segment, key, identity, level=level, nonce=nonce))


def seal_parts(
    segment: bytes,
    key: DataKey,
    identity: FrameIdentity,
    *,
    level: int = codec.DEFAULT_LEVEL,
    nonce: bytes | None = None,
) -> tuple[bytes, bytes]:
    """The frame as (version + nonce, ciphertext + tag), so packing can write it uncopied."""
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    elif len(nonce) != NONCE_BYTES:
        raise ValueError("a nonce is exactly 12 bytes")
    ciphertext = key.aead.encrypt(
        nonce, codec.compress(segment, level=level), identity.associated_data()
    )
    return _VERSION_BYTE + nonce, ciphertext


def open_frame(
    frame: bytes | memoryview,
    key: DataKey,
    identity: FrameIdentity,
    *,
    max_size: int = codec.MAX_SEGMENT_BYTES,
) -> bytes:
    """Authenticate, decrypt and decompress one frame; any tampering raises CorruptData."""
    # Only authenticated bytes reach zstd, and never more than the cap comes out.
    return codec.decompress(decrypt_frame(frame, key, identity), max_size=max_size)


def decrypt_frame(frame: bytes | memoryview, key: DataKey, identity: FrameIdentity) -> bytes:
    """Authenticate and decrypt one frame: its zstd frame (not yet decompressed), or
    CorruptData. A read that decompresses straight into its response (codec.decompress_into)
    starts here."""
    if len(frame) < FRAME_OVERHEAD or frame[0] != FRAME_VERSION:
        raise CorruptData(f"segment {identity.segment_id} is not a readable frame")
    # Views, not slices: the ciphertext is handed to AES-GCM without a copy.
    view = frame if isinstance(frame, memoryview) else memoryview(frame)
    try:
        return key.aead.decrypt(
            view[1 : 1 + NONCE_BYTES], view[1 + NONCE_BYTES :], identity.associated_data(frame[0])
        )
    except InvalidTag:
        raise CorruptData(f"segment {identity.segment_id} failed authentication") from None
