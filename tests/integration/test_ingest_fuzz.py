"""Fuzzing parse, seal, flush and read with mutations of real Sentry messages (hypothesis): only
InvalidInput escapes, and every accepted segment reads back byte for byte (first delivery wins).

Bounded for CI by FUZZ_EXAMPLES (default 150 per case, about 30 s in all); a longer run:
    VAULT_STORE_FUZZ_EXAMPLES=3000 CI=true pytest -q tests/integration/test_ingest_fuzz.py -k sqlite
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RECORDINGS_DIR, VaultFactory, need
from vault_store.core.message import build_message, parse_message
from vault_store.core.rrweb import segment_bodies
from vault_store.errors import InvalidInput
from vault_store.services.samples import load_recordings

FUZZ_EXAMPLES = int(os.environ.get("VAULT_STORE_FUZZ_EXAMPLES", "150"))
_SMALL = 64 * 1024  # small real segments keep each example fast; large ones add no new shapes


def _seeds() -> list[bytes]:
    if not RECORDINGS_DIR.is_dir():
        return []
    bodies = [
        body
        for recording in load_recordings(RECORDINGS_DIR)
        for body in segment_bodies(recording.events)
        if len(body) <= _SMALL
    ][:24]
    return [
        build_message(project_id=5, replay_id=f"{n:032x}", segment_id=n % 3, body=body)
        for n, body in enumerate(bodies)
    ]


SEEDS = _seeds()


def _mutate_bytes(data: bytes, draw: Any) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        position = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action == "flip":
            out[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            out[position] = draw(st.sampled_from(b'[]{},:"\\\x00\xff0u'))
        elif action == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del out[position : position + draw(st.integers(1, 16))]
        else:
            del out[position:]
    return bytes(out)


# Events that are valid JSON and stress what the issue found: crumbs to split, depth, lone
# surrogates, numbers that re-serialization would change, network and odd events.
_EVENTS = [
    b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console","message":"x"}}}',
    b'{"type":2,"data":{"node":' + b"[" * 3000 + b"]" * 3000 + b"}}",
    b'{"type":3,"data":{"text":"\\ud83c","x":1.50,"n":123456789012345678901234567890}}',
    b'{"type":6,"data":{"plugin":"rrweb/network@1","payload":{}}}',
    b'{"type":5,"data":{"tag":"performanceSpan","payload":{"op":"resource.fetch"}}}',
    b'"\\udc00"',
    b"null",
    b"[]",
]


def _keep_valid(body: bytes, draw: Any) -> bytes:
    """Mutations that keep a JSON array valid: new events, whitespace, other digits."""
    out = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["event", "space", "digit"]))
        if action == "event":
            event = draw(st.sampled_from(_EVENTS))
            out[1:1] = event + (b"," if out[1:].lstrip() != b"]" else b"")
        elif action == "space":
            commas = [i for i in range(len(out)) if out[i] == 0x2C][:2000]
            if commas:
                at = draw(st.sampled_from(commas)) + 1
                out[at:at] = draw(st.sampled_from([b" ", b"\n", b"\t\r\n  "]))
        else:
            digits = [i for i in range(min(len(out), 20000)) if 0x31 <= out[i] <= 0x39]
            if digits:
                out[draw(st.sampled_from(digits))] = draw(st.sampled_from(b"123456789"))
    return bytes(out)


@st.composite
def mutated_messages(draw: Any) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):
        return _mutate_bytes(seed, draw)  # the msgpack bytes themselves
    # The decompressed body, so mutations reach the scanner and part splitting.
    message = msgpack.unpackb(seed)
    header, _newline, body = message["payload"].partition(b"\n")
    body = zlib.decompress(body)
    body = _keep_valid(body, draw) if draw(st.booleans()) else _mutate_bytes(body, draw)
    message["payload"] = header + b"\n" + (zlib.compress(body) if draw(st.booleans()) else body)
    if draw(st.booleans()):
        message["replay_video"] = draw(st.binary(max_size=64))
    return bytes(msgpack.packb(message))


@pytest.mark.parametrize("typed_parts", [True, False])
def test_fuzzed_real_messages_are_refused_cleanly_or_read_back_exactly(
    make_vault: VaultFactory, typed_parts: bool
) -> None:
    need(bool(SEEDS), f"real recordings not found at {RECORDINGS_DIR}")
    vault = make_vault(typed_parts=typed_parts)
    first: dict[tuple[int, str, int], tuple[bytes, bytes | None]] = {}
    counts = {"accepted": 0, "refused": 0}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases every CI run; a longer run explores further
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated_messages())
    def one(raw: bytes) -> None:
        try:
            segment = parse_message(raw)
        except InvalidInput:
            counts["refused"] += 1
            return
        counts["accepted"] += 1
        vault.ingest_segment(segment)  # only InvalidInput may escape: anything else fails here
        vault.flush()
        key = (segment.project_id, segment.replay_id, segment.segment_id)
        first.setdefault(key, (segment.body, segment.replay_video))
        body, video = first[key]
        assert vault.read_segment(*key) == body  # the first delivery, byte for byte
        assert vault.read_video(*key) == video

    one()
    print(f"fuzz typed_parts={typed_parts}: {counts}")
    assert counts["accepted"] and counts["refused"]  # both paths were exercised
