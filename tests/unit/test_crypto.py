"""Sealed frames: golden vectors, tampering of every kind, the decompression cap, the key holder."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_store.core import codec
from vault_store.core.crypto import (
    DataKey,
    FrameIdentity,
    decrypt_frame,
    length_prefixed,
    open_frame,
    seal,
)
from vault_store.core.keys import KeyContext
from vault_store.errors import CorruptData

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sealed_frames.json").read_text())
GOOD = [case for case in VECTORS["cases"] if case["expect"] == "ok"]
BAD = [case for case in VECTORS["cases"] if case["expect"] == "CorruptData"]


def _identity(case: dict[str, Any]) -> FrameIdentity:
    return FrameIdentity(case["project_id"], case["replay_id"], case["segment_id"], case["part"])


def _spec_associated_data(case: dict[str, Any]) -> bytes:
    """The associated data written out from the design, independently of vault_store.core.crypto."""
    fields = [
        b"vault-store frame",
        b"\x01",
        struct.pack(">Q", case["project_id"]),
        case["replay_id"].encode(),
        struct.pack(">Q", case["segment_id"]),
        case["part"].encode(),
    ]
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


@pytest.mark.parametrize("case", GOOD, ids=[c["name"] for c in GOOD])
def test_golden_vector_seals_to_exact_bytes(case: dict[str, Any]) -> None:
    frame = seal(
        case["plaintext"].encode(),
        DataKey(bytes.fromhex(case["key"])),
        _identity(case),
        level=case["level"],
        nonce=bytes.fromhex(case["nonce"]),
    )
    assert frame.hex() == case["frame"]


@pytest.mark.parametrize("case", GOOD, ids=[c["name"] for c in GOOD])
def test_golden_vector_matches_the_documented_layout(case: dict[str, Any]) -> None:
    """Decrypt with bare AES-GCM and the spec's associated data: the layout is what we say."""
    frame = bytes.fromhex(case["frame"])
    assert frame[0] == 1
    assert frame[1:13] == bytes.fromhex(case["nonce"])
    compressed = AESGCM(bytes.fromhex(case["key"])).decrypt(
        frame[1:13], frame[13:], _spec_associated_data(case)
    )
    assert compressed.hex() == case["compressed"]
    assert zstandard.ZstdDecompressor().decompress(compressed) == case["plaintext"].encode()
    assert DataKey(bytes.fromhex(case["key"])).key_check().hex() == case["key_check"]


@pytest.mark.parametrize("case", GOOD, ids=[c["name"] for c in GOOD])
def test_golden_vector_opens(case: dict[str, Any]) -> None:
    opened = open_frame(
        bytes.fromhex(case["frame"]), DataKey(bytes.fromhex(case["key"])), _identity(case)
    )
    assert opened == case["plaintext"].encode()


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_tampered_vector_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(CorruptData):
        open_frame(
            bytes.fromhex(case["frame"]), DataKey(bytes.fromhex(case["key"])), _identity(case)
        )


def test_every_single_byte_change_is_detected() -> None:
    key = DataKey(bytes(32))
    identity = FrameIdentity(1, "a" * 32, 3)
    frame = seal(b'[{"type":3,"data":{}}]', key, identity)
    for position in range(len(frame)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(frame)
            tampered[position] ^= flip
            with pytest.raises(CorruptData):
                open_frame(bytes(tampered), key, identity)


@given(cut=st.integers(min_value=1, max_value=200), extra=st.binary(min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_truncation_and_extension_are_detected(cut: int, extra: bytes) -> None:
    key = DataKey(bytes(range(32)))
    identity = FrameIdentity(9, "b" * 32, 0)
    frame = seal(b"[" + b'{"type":3},' * 20 + b"{}]", key, identity)
    with pytest.raises(CorruptData):
        open_frame(frame[: max(len(frame) - cut, 0)], key, identity)
    with pytest.raises(CorruptData):
        open_frame(frame + extra, key, identity)


@given(body=st.binary(max_size=4096), level=st.integers(min_value=1, max_value=9))
@settings(max_examples=60, deadline=None)
def test_seal_then_open_round_trips(body: bytes, level: int) -> None:
    key = DataKey.generate()
    identity = FrameIdentity(5, "c" * 32, 12, "recording")
    assert open_frame(seal(body, key, identity, level=level), key, identity) == body


def test_nothing_unauthenticated_reaches_zstd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def spy(data: bytes, max_size: int) -> bytes:
        calls.append(data)
        return b""

    monkeypatch.setattr(codec, "decompress", spy)
    key = DataKey(bytes(32))
    identity = FrameIdentity(1, "d" * 32, 0)
    frame = bytearray(seal(b"[]", key, identity))
    frame[20] ^= 1
    with pytest.raises(CorruptData):
        open_frame(bytes(frame), key, identity)
    assert calls == []


def test_decompressed_size_is_capped() -> None:
    key = DataKey(bytes(32))
    identity = FrameIdentity(1, "e" * 32, 0)
    frame = seal(b"[" + b" " * 10_000 + b"]", key, identity)
    with pytest.raises(CorruptData, match="cap"):
        open_frame(frame, key, identity, max_size=1_000)


def test_cap_also_holds_for_frames_without_a_declared_size() -> None:
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 50_000)
    with pytest.raises(CorruptData):
        codec.decompress(unsized, max_size=1_000)
    assert codec.decompress(unsized, max_size=50_000) == b"x" * 50_000


def test_data_key_never_shows_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    material = bytes(range(32))
    key = DataKey(material)
    logging.getLogger("test").warning("key is %s %r", key, key)
    shown = f"{key} {key!r} {[key]} {caplog.text}"
    assert material.hex() not in shown
    assert repr(material) not in shown
    assert "redacted" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)


def test_data_key_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(bytes(16))


def test_random_nonces_differ() -> None:
    key = DataKey.generate()
    identity = FrameIdentity(1, "f" * 32, 0)
    frames = {seal(b"[]", key, identity)[1:13] for _ in range(100)}
    assert len(frames) == 100


@settings(max_examples=200)
@given(
    st.integers(0, 2**64 - 1),
    st.text(alphabet="0123456789abcdef", max_size=32),
    st.integers(0, 2**64 - 1),
    st.text(max_size=16),
    st.integers(0, 255),
)
def test_associated_data_is_the_length_prefixed_encoding(
    project_id: int, replay_id: str, segment_id: int, part: str, version: int
) -> None:
    # The packed forms must stay byte for byte the documented length-prefixed encodings.
    identity = FrameIdentity(project_id, replay_id, segment_id, part)
    assert identity.associated_data(version) == length_prefixed(
        b"vault-store frame",
        bytes([version]),
        struct.pack(">Q", project_id),
        replay_id.encode("ascii"),
        struct.pack(">Q", segment_id),
        part.encode("utf-8"),
    )
    assert KeyContext(project_id, replay_id).associated_data() == length_prefixed(
        b"vault-store dek v1", struct.pack(">Q", project_id), replay_id.encode("ascii")
    )


def test_decompress_into_writes_the_frame_in_place() -> None:
    body = b'[{"type":3,"data":{"n":1}}]' * 200
    frame = codec.compress(body)
    page = bytearray(b"#" * (len(body) + 2))
    assert codec.content_size(frame) == len(body)
    codec.decompress_into(frame, memoryview(page)[1 : 1 + len(body)])
    assert page == b"#" + body + b"#"


@pytest.mark.parametrize("delta", [-1, 1])
def test_decompress_into_refuses_a_target_not_of_the_declared_size(delta: int) -> None:
    body = b"x" * 5_000
    target = memoryview(bytearray(len(body) + delta))
    with pytest.raises(CorruptData, match="declared size"):
        codec.decompress_into(codec.compress(body), target)


def test_decompress_into_refuses_a_cut_frame() -> None:
    frame = codec.compress(bytes(range(256)) * 64)
    with pytest.raises(CorruptData):
        codec.decompress_into(frame[:-4], memoryview(bytearray(256 * 64)))


def test_content_size_is_capped_and_says_when_unknown() -> None:
    with pytest.raises(CorruptData, match="cap"):
        codec.content_size(codec.compress(b" " * 10_000), max_size=1_000)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 50)
    assert codec.content_size(unsized) == -1
    with pytest.raises(CorruptData):
        codec.content_size(b"not zstd at all")


def test_decrypt_frame_authenticates_without_decompressing() -> None:
    key = DataKey(bytes(32))
    identity = FrameIdentity(1, "f" * 32, 4)
    frame = seal(b"[1]", key, identity)
    assert codec.decompress(decrypt_frame(frame, key, identity)) == b"[1]"
    with pytest.raises(CorruptData, match="segment 5 failed authentication"):
        decrypt_frame(frame, key, FrameIdentity(1, "f" * 32, 5))
