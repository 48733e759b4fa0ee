"""Range rows as a PostgreSQL binary COPY stream, the form a flush sends them in.

Binary COPY spares the server parsing text: timestamps, dates and hex-escaped keys cost it most
of the time a text COPY adds (about 16% of a flush's COPY, docs/benchmarks.md). The format is
PostgreSQL's documented one ("Binary Format" under COPY): a fixed header, then per row a field
count and each field as a 4-byte length and its bytes in the type's network form, then a
trailer. psycopg2 has no writer for it. pgcopy has one, but it encodes every field of every row.
Here the columns are ordered so that what a replay's rows share (project, replay, keys, times,
bucket) and what a blob's rows share (part, path) is encoded once, and only three integers are
packed per row.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

from vault_store.catalog.records import RangeRecord

# The order the COPY names its columns in: shared per replay, shared per blob, then per row.
COLUMNS = (
    "project_id",
    "replay_id",
    "wrapped_dek",
    "kek",
    "key_check",
    "created_at",
    "expires_at",
    "expiry_bucket",
    "part",
    "blob_path",
    "segment_id",
    "start",
    "stop",
)
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # signature, flags, no extension
TRAILER = struct.pack(">h", -1)
# Rows joined into one piece of the stream (about 50 KB): the server stores one piece while
# the next is encoded here.
ROWS_PER_CHUNK = 200

_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_POSTGRES_EPOCH_DAY = date(2000, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_FIELD_COUNT = struct.Struct(">h")
_LENGTH = struct.Struct(">i")
_INT8 = struct.Struct(">iq")
_INT4 = struct.Struct(">ii")
_PER_ROW = struct.Struct(">iqiqiq")  # segment_id, start, stop: each a length and an int8


def binary_copy(
    rows: Sequence[RangeRecord], buckets: dict[tuple[int, str], date], encoding: str
) -> Iterator[bytes]:
    """The rows in binary COPY form for COLUMNS, in pieces of whole rows, header first and
    trailer last. `buckets` gives each replay's expiry bucket; text goes in `encoding` (the
    connection's, as psycopg2 would send it). A row that cannot be encoded raises
    UnencodableRow, naming it."""
    heads: dict[tuple[int, str, bytes, bytes, str, datetime, datetime], bytes] = {}
    middles: dict[tuple[str, str], bytes] = {}
    pieces: list[bytes] = [HEADER]
    per_row = _PER_ROW.pack
    for row in rows:
        try:
            key = (
                row.project_id,
                row.replay_id,
                row.wrapped_dek,
                row.key_check,
                row.kek,
                row.created_at,
                row.expires_at,
            )
            head = heads.get(key)
            if head is None:
                head = heads[key] = _head(row, buckets[(row.project_id, row.replay_id)], encoding)
            middle = middles.get((row.part, row.blob_path))
            if middle is None:
                middle = middles[(row.part, row.blob_path)] = _text(row.part, encoding) + _text(
                    row.blob_path, encoding
                )
            pieces.append(head + middle + per_row(8, row.segment_id, 8, row.start, 8, row.stop))
        except (ValueError, OverflowError, struct.error) as exc:  # UnicodeEncodeError is one
            raise UnencodableRow(
                f"range row of replay {row.project_id}/{row.replay_id} segment {row.segment_id} "
                f"part {row.part!r} cannot be stored: {exc}"
            ) from None
        if len(pieces) >= ROWS_PER_CHUNK:
            yield b"".join(pieces)
            pieces.clear()
    pieces.append(TRAILER)
    yield b"".join(pieces)


class UnencodableRow(ValueError):
    """A range row holds a value its column cannot: an integer past 64 bits, a time with no
    zone, text with a NUL or that the connection's encoding cannot carry."""


def _head(row: RangeRecord, bucket: date, encoding: str) -> bytes:
    """The field count and the fields a replay's rows share, encoded once per replay."""
    return b"".join(
        (
            _FIELD_COUNT.pack(len(COLUMNS)),
            _INT8.pack(8, row.project_id),
            _text(row.replay_id, encoding),
            _bytes(row.wrapped_dek),
            _text(row.kek, encoding),
            _bytes(row.key_check),
            _INT8.pack(8, _timestamp(row.created_at)),
            _INT8.pack(8, _timestamp(row.expires_at)),
            _INT4.pack(4, (bucket - _POSTGRES_EPOCH_DAY).days),
        )
    )


class CopyStream:
    """A file-like view of an iterator of pieces for psycopg2's COPY, read as the server asks.

    Streaming lets PostgreSQL store one piece while the next is being encoded here.
    """

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._pending = b""
        # psycopg2 reports an exception raised in read() as a cancelled query (which reads as
        # a lost connection, retryable); the caller raises this one, the original, instead.
        self.failure: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        parts = [self._pending]
        length = len(self._pending)
        try:
            # Iterated directly, never through a wrapping generator: closing one when the
            # loop breaks would close the pieces too and end the stream early.
            for piece in self._pieces:
                parts.append(piece)
                length += len(piece)
                if 0 <= size <= length:
                    break
        except Exception as exc:  # kept for the caller, and raised on to psycopg2
            self.failure = exc
            raise
        data = b"".join(parts)
        if size < 0:
            self._pending = b""
            return data
        self._pending = data[size:]
        return data[:size]

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _timestamp(moment: datetime) -> int:
    """A timestamptz in binary form: microseconds since 2000-01-01 UTC."""
    if moment.tzinfo is None:
        # Text COPY would read a naive time in the session's time zone; guessing one here
        # could move every row of a flush by hours.
        raise ValueError("catalog timestamps must carry a time zone")
    return (moment - _POSTGRES_EPOCH) // _MICROSECOND


def _text(value: str, encoding: str) -> bytes:
    if "\x00" in value:
        # PostgreSQL's text cannot hold it; said here, the error names the row.
        raise ValueError("text holds a NUL character")
    encoded = value.encode(encoding)
    return _LENGTH.pack(len(encoded)) + encoded


def _bytes(value: bytes) -> bytes:
    return _LENGTH.pack(len(value)) + value
