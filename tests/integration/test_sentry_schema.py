"""Every message Sentry's schema for `ingest-replay-recordings` allows (sentry-kafka-schemas) and
Sentry's consumer stores is stored and read back byte for byte; what Sentry drops, we refuse."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import msgpack
import pytest
from sentry_kafka_schemas import get_codec, iter_examples
from sqlalchemy import select

from tests.conftest import VaultFactory
from vault_store.catalog.models import RecordingByteRange
from vault_store.core.message import parse_message
from vault_store.errors import InvalidInput

TOPIC = "ingest-replay-recordings"
CODEC = get_codec(TOPIC)
ABSENT = object()  # the field is left out of the message
# A console breadcrumb makes the segment two typed parts; 1.50 and a huge integer must survive.
BODY = (
    b'[{"type":4,"data":{"href":"https://example.org/"},"timestamp":1},\n'
    b' {"type":3,"data":{"x":1.50,"n":123456789012345678901234567890}},'
    b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console","message":"\\ud83c"}}}]'
)


def _examples() -> list[dict[str, Any]]:
    loaded = [example.load() for example in iter_examples(TOPIC)]
    assert loaded, "sentry-kafka-schemas ships no example for the topic"
    return loaded


def _message(
    replay_id: str,
    *,
    base: dict[str, Any] | None = None,
    retention_days: int = 90,
    compress: bool = True,
    header: bool = True,
    **optional: object,
) -> dict[str, Any]:
    body = zlib.compress(BODY) if compress else BODY
    message: dict[str, Any] = dict(base or {}) | {
        "type": "replay_recording_not_chunked",
        "replay_id": replay_id,
        "org_id": 3,
        "project_id": 7,
        "received": 1_700_000_000,
        "retention_days": retention_days,
        "payload": (b'{"segment_id":0}\n' if header else b"") + body,
    }
    for name, value in optional.items():
        if value is ABSENT:
            message.pop(name, None)
        else:
            message[name] = value
    CODEC.validate(message)  # only messages Sentry's schema accepts
    return message


def test_the_shipped_examples_follow_the_schema_and_are_dropped_like_sentry_drops_them() -> None:
    for example in _examples():
        CODEC.validate(example)
        # The package's example payload has no `{"segment_id":N}` header line: Sentry's
        # consumer cannot tell its segment and drops it, and so do we, naming the field.
        assert b"\n" not in example["payload"]
        with pytest.raises(InvalidInput) as refused:
            parse_message(msgpack.packb(example))
        assert refused.value.field == "payload.header"


def test_the_examples_with_a_real_payload_are_stored_byte_for_byte(
    make_vault: VaultFactory,
) -> None:
    vault = make_vault(typed_parts=True)
    stored = []
    for n, example in enumerate(_examples()):
        message = _message(f"{n:032x}", base=example, retention_days=example["retention_days"])
        vault.ingest_segment(parse_message(msgpack.packb(message)))
        stored.append(f"{n:032x}")
    vault.flush()
    for replay_id in stored:
        assert vault.read_segment(7, replay_id, 0) == BODY


VARIANTS = list(
    itertools.product(
        [ABSENT, None, 12],  # key_id: absent, nil, an integer
        [ABSENT, 0, 1],  # version: absent (default 0) or an integer (nil is not in the schema)
        [ABSENT, None, b'{"type":"replay_event"}'],  # replay_event
        [ABSENT, None, b"\x00\x00\x00\x18ftypmp42 video bytes"],  # replay_video
        [0, 90],  # retention_days: 0 is Sentry's default of 30
        [True, False],  # zlib or raw body
    )
)


@pytest.mark.parametrize("typed_parts", [True, False])
def test_every_variant_the_schema_allows_is_stored_and_read_back_exactly(
    make_vault: VaultFactory, typed_parts: bool
) -> None:
    vault = make_vault(typed_parts=typed_parts)
    expected: dict[str, tuple[bytes | None, int]] = {}
    for n, (key_id, version, event, video, days, compress) in enumerate(VARIANTS):
        replay_id = f"{n:032x}"
        message = _message(
            replay_id,
            retention_days=days,
            compress=compress,
            key_id=key_id,
            version=version,
            replay_event=event,
            replay_video=video,
        )
        segment = parse_message(msgpack.packb(message))
        assert segment.body == BODY
        vault.ingest_segment(segment)
        expected[replay_id] = (video if isinstance(video, bytes) else None, days or 30)
    vault.flush()
    rbr = RecordingByteRange
    with vault._catalog.engine.connect() as conn:
        classes = dict(
            conn.execute(select(rbr.replay_id, rbr.blob_path).where(rbr.part != "video")).all()
        )
    for replay_id, (video, days) in expected.items():
        assert vault.read_segment(7, replay_id, 0) == BODY
        assert vault.read_video(7, replay_id, 0) == video
        assert classes[replay_id].startswith(f"r{days}d/")  # retention 0 expires as 30 days


@pytest.mark.parametrize("compress", [True, False])
def test_a_payload_without_its_header_line_is_refused_as_sentry_drops_it(compress: bool) -> None:
    message = _message("ab" * 16, compress=compress, header=False)
    with pytest.raises(InvalidInput) as refused:
        parse_message(msgpack.packb(message))
    assert refused.value.field == "payload.header"
    assert b"example.org" not in str(refused.value).encode()  # the reason holds no content
