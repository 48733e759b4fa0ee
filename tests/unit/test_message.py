"""Ingest message validation: every malformed case names its field; good messages parse exactly."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import pytest

from vault_store.core.message import (
    MAX_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    build_message,
    parse_message,
    split_stream,
)
from vault_store.errors import InvalidInput

BODY = b'[{"type":3,"data":{"source":2},"timestamp":1700000000000}]'
REPLAY = "0123456789abcdef0123456789abcdef"


def _message(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "replay_recording_not_chunked",
        "replay_id": REPLAY,
        "org_id": 1,
        "project_id": 42,
        "key_id": 7,
        "received": 1_700_000_000,
        "retention_days": 90,
        "payload": b'{"segment_id":3}\n' + zlib.compress(BODY),
        "replay_event": b'{"user":{"id":"u1"}}',
        "replay_video": None,
        "version": 1,
    }
    for key, value in changes.items():
        if value is _DROP:
            del message[key]
        else:
            message[key] = value
    return message


_DROP = object()


def _raw(**changes: Any) -> bytes:
    return bytes(msgpack.packb(_message(**changes)))


def test_zlib_body_is_stored_decompressed() -> None:
    segment = parse_message(_raw())
    assert (segment.project_id, segment.replay_id, segment.segment_id) == (42, REPLAY, 3)
    assert segment.body == BODY
    assert segment.retention_days == 90
    assert segment.replay_event == b'{"user":{"id":"u1"}}'


def test_raw_json_body_is_stored_as_is() -> None:
    segment = parse_message(_raw(payload=b'{"segment_id": 0}\n' + BODY))
    assert segment.segment_id == 0
    assert segment.body == BODY


def test_header_is_parsed_as_json_not_as_a_string() -> None:
    payload = b'{ "segment_id" :\t12 , "other": "x"}\n' + BODY
    assert parse_message(_raw(payload=payload)).segment_id == 12


def test_unknown_keys_are_ignored() -> None:
    assert parse_message(_raw(new_field_from_newer_relay={"a": 1})).body == BODY


def test_optional_keys_may_be_absent_or_nil() -> None:
    segment = parse_message(
        _raw(replay_event=_DROP, replay_video=_DROP, version=_DROP, key_id=None)
    )
    assert segment.replay_event is None


def test_build_message_round_trips() -> None:
    for compress in (True, False):
        raw = build_message(
            project_id=5, replay_id=REPLAY, segment_id=9, body=BODY, compress=compress
        )
        segment = parse_message(raw)
        assert (segment.project_id, segment.segment_id, segment.body) == (5, 9, BODY)


BAD_MESSAGES: list[tuple[str, bytes, str]] = [
    ("not msgpack", b"\xc1\xc1\xc1", "message"),
    ("not a map", bytes(msgpack.packb([1, 2, 3])), "message"),
    ("unknown type", _raw(type="replay_recording"), "type"),
    ("missing type", _raw(type=_DROP), "type"),
    ("replay id too short", _raw(replay_id="abc"), "replay_id"),
    ("replay id with dashes", _raw(replay_id="01234567-89ab-cdef-0123-456789abcdef"), "replay_id"),
    ("replay id uppercase", _raw(replay_id=REPLAY.upper()), "replay_id"),
    ("replay id not a string", _raw(replay_id=12345), "replay_id"),
    ("missing replay id", _raw(replay_id=_DROP), "replay_id"),
    ("project id negative", _raw(project_id=-1), "project_id"),
    ("project id a float", _raw(project_id=42.0), "project_id"),
    ("project id a string", _raw(project_id="42"), "project_id"),
    ("project id a boolean", _raw(project_id=True), "project_id"),
    ("org id missing", _raw(org_id=_DROP), "org_id"),
    ("key id a string", _raw(key_id="7"), "key_id"),
    ("received a float", _raw(received=1.5), "received"),
    ("retention negative", _raw(retention_days=-1), "retention_days"),
    ("retention a string", _raw(retention_days="90"), "retention_days"),
    ("payload missing", _raw(payload=_DROP), "payload"),
    ("payload a string", _raw(payload="{}\n[]"), "payload"),
    ("no header line", _raw(payload=BODY), "payload.header"),
    ("header not JSON", _raw(payload=b"segment 3\n" + BODY), "payload.header"),
    ("header a list", _raw(payload=b"[3]\n" + BODY), "payload.header"),
    ("segment id missing", _raw(payload=b"{}\n" + BODY), "payload.header.segment_id"),
    (
        "segment id negative",
        _raw(payload=b'{"segment_id":-1}\n' + BODY),
        "payload.header.segment_id",
    ),
    (
        "segment id a string",
        _raw(payload=b'{"segment_id":"3"}\n' + BODY),
        "payload.header.segment_id",
    ),
    (
        "segment id a float",
        _raw(payload=b'{"segment_id":3.0}\n' + BODY),
        "payload.header.segment_id",
    ),
    (
        "segment id a boolean",
        _raw(payload=b'{"segment_id":true}\n' + BODY),
        "payload.header.segment_id",
    ),
    ("body a JSON object", _raw(payload=b'{"segment_id":1}\n{"a":1}'), "payload.body"),
    ("body plain text", _raw(payload=b'{"segment_id":1}\nhello'), "payload.body"),
    ("body broken JSON array", _raw(payload=b'{"segment_id":1}\n[{"a":'), "payload.body"),
    (
        "body corrupt zlib",
        _raw(payload=b'{"segment_id":1}\n\x78\x9c\x00\x01garbage'),
        "payload.body",
    ),
    (
        "body truncated zlib",
        _raw(payload=b'{"segment_id":1}\n' + zlib.compress(BODY)[:-6]),
        "payload.body",
    ),
    (
        "zlib of a non-array",
        _raw(payload=b'{"segment_id":1}\n' + zlib.compress(b'{"a":1}')),
        "payload.body",
    ),
    ("replay_event a string", _raw(replay_event="{}"), "replay_event"),
    ("replay_video an int", _raw(replay_video=5), "replay_video"),
]


@pytest.mark.parametrize(
    ("raw", "field"),
    [(raw, field) for _, raw, field in BAD_MESSAGES],
    ids=[n for n, _, _ in BAD_MESSAGES],
)
def test_malformed_message_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_message_over_the_producer_limit_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message(b"\x80" + b"\x00" * MAX_MESSAGE_BYTES)
    assert caught.value.field == "message"


def test_body_inflating_past_the_limit_is_refused() -> None:
    bomb = zlib.compress(b"[" + b" " * MAX_BODY_BYTES + b"]", 9)
    with pytest.raises(InvalidInput) as caught:
        parse_message(_raw(payload=b'{"segment_id":1}\n' + bomb))
    assert caught.value.field == "payload.body"
    assert "over" in caught.value.problem


def test_stream_of_concatenated_messages_splits_exactly() -> None:
    raws = [_raw(payload=b'{"segment_id":%d}\n' % n + BODY) for n in range(5)]
    assert list(split_stream(b"".join(raws))) == raws


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b'[{"type": 2}]', "start with a map"),
        (_raw()[:-3], "truncated"),
        (_raw() + _raw()[:10], "truncated"),
    ],
)
def test_bad_streams_are_refused_whole(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        list(split_stream(data, source="f.msgpack"))


def test_ids_beyond_what_the_catalog_stores_are_refused_at_the_edge() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message(_raw(project_id=2**63))
    assert caught.value.field == "project_id" and "2^63-1" in caught.value.problem
    with pytest.raises(InvalidInput) as caught:
        parse_message(_raw(payload=b'{"segment_id":%d}\n' % 2**63 + BODY))
    assert caught.value.field == "payload.header.segment_id"
    assert parse_message(_raw(project_id=2**63 - 1)).project_id == 2**63 - 1
