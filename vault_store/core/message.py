"""Parse and validate a Sentry replay-recording ingest message (msgpack) into one segment."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from vault_store.core import parts
from vault_store.core.rrweb import Scan
from vault_store.errors import InvalidInput

MESSAGE_TYPE = "replay_recording_not_chunked"
# The producer's limits (Relay: max_replay_message_size 15 MB for the Kafka message,
# max_replay_compressed_size 10 MB, max_replay_uncompressed_size 100 MB): whole message,
# compressed body, uncompressed body. A body is decompressed with this cap, never past it.
MAX_MESSAGE_BYTES = 15 * 1024 * 1024
MAX_COMPRESSED_BODY_BYTES = 10 * 1024 * 1024
MAX_BODY_BYTES = 100 * 1024 * 1024
MAX_RETENTION_DAYS = 3650
# Sentry stores a segment whose retention_days is 0 under its default of 30 days.
DEFAULT_RETENTION_DAYS = 30
_UINT64_LIMIT = 2**64
# Ids the catalog stores (project, segment) live in signed 64-bit columns on both databases.
MAX_STORED_ID = 2**63 - 1
_MAX_CONTAINER = 4096
_REPLAY_ID = re.compile(r"[0-9a-f]{32}")
# map16 and map32; fixmap (0x80-0x8f) is checked by range.
_MSGPACK_MAP_MARKERS = (0xDE, 0xDF)


@dataclass(frozen=True, slots=True)
class Segment:
    """One recording segment ready to seal: identity, retention and the rrweb JSON body."""

    project_id: int
    replay_id: str
    segment_id: int
    body: bytes
    retention_days: int
    org_id: int = 0
    received: int = 0
    replay_event: bytes | None = None
    replay_video: bytes | None = None
    # The body's scan by validation (each event's part code), handed on so typed parts need not
    # scan again.
    scan: Scan | None = field(default=None, compare=False, repr=False)


def validate_replay_id(value: object, field: str = "replay_id") -> str:
    """A replay id is 32 lowercase hex characters without dashes."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a string, got {_type_name(value)}")
    if not _REPLAY_ID.fullmatch(value):
        raise InvalidInput(field, "expected 32 lowercase hex characters without dashes")
    return value


def validate_uint64(value: object, field: str) -> int:
    """An unsigned 64-bit integer (booleans are not integers here)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, f"expected an integer, got {_type_name(value)}")
    if not 0 <= value < _UINT64_LIMIT:
        raise InvalidInput(field, "expected an unsigned 64-bit integer")
    return value


def validate_stored_id(value: object, field: str) -> int:
    """An id the catalog stores: unsigned, and at most 2^63-1 (signed 64-bit columns).

    Refused here, at the edge, rather than at insert, where one such message would fail the
    whole flush it is buffered with.
    """
    number = validate_uint64(value, field)
    if number > MAX_STORED_ID:
        raise InvalidInput(field, "larger than 2^63-1, the largest id the catalog stores")
    return number


def validate_retention_days(value: object, field: str = "retention_days") -> int:
    """Retention in whole days, 1 to MAX_RETENTION_DAYS."""
    days = validate_uint64(value, field)
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(field, f"expected 1 to {MAX_RETENTION_DAYS} days")
    return days


def parse_message(raw: bytes) -> Segment:
    """Validate one msgpack ingest message; raise InvalidInput naming the bad field.

    Nothing else escapes: an error nobody foresaw (a map with an array key, say) is reported
    as the message being unreadable, with the error's type and never its content.
    """
    try:
        return _parse_message(raw)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 (isolation: one bad message costs only itself)
        raise InvalidInput("message", f"could not be read ({type(exc).__name__})") from None


def _parse_message(raw: bytes) -> Segment:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise InvalidInput("message", f"expected bytes, got {_type_name(raw)}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidInput("message", f"larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        # Bounded containers: a message is a map of about ten fields, so a huge array or map
        # anywhere in it is refused before it costs memory.
        message = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            max_array_len=_MAX_CONTAINER,
            max_map_len=_MAX_CONTAINER,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidInput("message", f"not a msgpack message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise InvalidInput("message", f"expected a map, got {_type_name(message)}")
    message_type = _required(message, "type")
    if message_type != MESSAGE_TYPE:
        raise InvalidInput("type", f"expected {MESSAGE_TYPE!r}")
    segment_id, body, scan = parse_payload(_required(message, "payload"))
    # Neither is used here; the schema allows any integer (or nil), and so do we.
    for name in ("key_id", "version"):
        value = message.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidInput(name, f"expected an integer or nil, got {_type_name(value)}")
    retention = _required(message, "retention_days")
    return Segment(
        project_id=validate_stored_id(_required(message, "project_id"), "project_id"),
        replay_id=validate_replay_id(_required(message, "replay_id")),
        segment_id=segment_id,
        body=body,
        scan=scan,
        retention_days=validate_retention_days(
            DEFAULT_RETENTION_DAYS
            if retention == 0 and not isinstance(retention, bool)
            else retention
        ),
        org_id=validate_uint64(_required(message, "org_id"), "org_id"),
        received=validate_uint64(_required(message, "received"), "received"),
        replay_event=_optional_bytes(message, "replay_event"),
        # An empty video is no video: nothing is sealed for it, and reads answer None.
        replay_video=_optional_bytes(message, "replay_video") or None,
    )


def parse_payload(payload: object) -> tuple[int, bytes, Scan]:
    """Split `{"segment_id":N}\\n<body>`: (N, the decompressed rrweb JSON, its scan)."""
    if not isinstance(payload, bytes):
        raise InvalidInput("payload", f"expected bytes, got {_type_name(payload)}")
    header, newline, body = payload.partition(b"\n")
    if not newline:
        raise InvalidInput("payload.header", "missing the header line")
    try:
        header_value = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise InvalidInput("payload.header", "the header line is not JSON") from None
    if not isinstance(header_value, dict):
        raise InvalidInput("payload.header", "the header line is not a JSON object")
    segment_id = header_value.get("segment_id")
    if not isinstance(segment_id, int) or isinstance(segment_id, bool) or segment_id < 0:
        raise InvalidInput("payload.header.segment_id", "expected a non-negative integer")
    validate_stored_id(segment_id, "payload.header.segment_id")
    return segment_id, *decode_body(body)


def decode_body(body: bytes) -> tuple[bytes, Scan]:
    """The rrweb JSON of a body that is zlib-compressed or raw JSON, and its scan (part codes)."""
    if _looks_like_zlib(body):
        if len(body) > MAX_COMPRESSED_BODY_BYTES:
            raise InvalidInput("payload.body", f"compressed body over {MAX_COMPRESSED_BODY_BYTES}")
        body = _inflate(body)
    elif len(body) > MAX_BODY_BYTES:
        raise InvalidInput("payload.body", f"body over {MAX_BODY_BYTES} bytes")
    if not body.lstrip()[:1] == b"[":
        raise InvalidInput("payload.body", "neither zlib data nor a JSON array")
    return body, parts.scan(body, field="payload.body")


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # Ask for one byte more than allowed: getting it back means the body is over the limit.
        inflated = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise InvalidInput("payload.body", "corrupt zlib data") from None
    if len(inflated) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise InvalidInput("payload.body", f"uncompressed body over {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise InvalidInput("payload.body", "truncated zlib data")
    return inflated


def _looks_like_zlib(body: bytes) -> bool:
    # RFC 1950: deflate method (low nibble 8) and a header checksum divisible by 31.
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _required(message: dict[Any, Any], field: str) -> object:
    if field not in message:
        raise InvalidInput(field, "missing")
    value: object = message[field]
    return value


def _optional_bytes(message: dict[Any, Any], field: str) -> bytes | None:
    value = message.get(field)
    if value is not None and not isinstance(value, bytes):
        raise InvalidInput(field, f"expected bytes or nil, got {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    return "nil" if value is None else type(value).__name__


def split_stream(data: bytes, *, source: str = "stream") -> Iterator[bytes]:
    """The raw bytes of each message in a file of one or more concatenated msgpack maps.

    Each message is handed on as raw bytes, so `parse_message` applies its size limit to it.
    A file that does not start with a map, or that ends inside a message, is refused whole.
    """
    if not data:
        raise InvalidInput(source, "empty file")
    if data[0] not in _MSGPACK_MAP_MARKERS and not 0x80 <= data[0] <= 0x8F:
        raise InvalidInput(source, "not a msgpack message (it must start with a map)")
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(data), 1024 * 1024))
    unpacker.feed(data)
    start = 0
    while start < len(data):
        try:
            # skip() walks one message without building it: no objects, no key-type errors.
            unpacker.skip()
        except msgpack.OutOfData:
            raise InvalidInput(source, f"truncated message at byte {start}") from None
        except Exception as exc:  # noqa: BLE001 (a broken stream: its boundaries cannot be trusted)
            raise InvalidInput(
                source, f"bad msgpack at byte {start} ({type(exc).__name__})"
            ) from None
        end = unpacker.tell()
        yield data[start:end]
        start = end


def build_message(
    *,
    project_id: int,
    replay_id: str,
    segment_id: int,
    body: bytes,
    retention_days: int = 90,
    org_id: int = 1,
    received: int = 0,
    compress: bool = True,
    replay_event: bytes | None = None,
) -> bytes:
    """A Sentry replay-recording message as the relay writes it (for demos, tests, benches)."""
    payload = b'{"segment_id":%d}\n' % segment_id + (zlib.compress(body) if compress else body)
    return bytes(
        msgpack.packb(
            {
                "type": MESSAGE_TYPE,
                "replay_id": replay_id,
                "org_id": org_id,
                "project_id": project_id,
                "key_id": None,
                "received": received,
                "retention_days": retention_days,
                "payload": payload,
                "replay_event": replay_event,
                "version": 1,
            }
        )
    )
