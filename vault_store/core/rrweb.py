"""Split a plain rrweb recording into segments the way a browser SDK flushes them."""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from vault_store.errors import InvalidInput

# The Sentry browser SDK flushes about every 5 s of activity and sends nothing while idle.
SEGMENT_SECONDS = 5.0
EVENT_META = 4
EVENT_FULL_SNAPSHOT = 2

Event = dict[str, Any]


def load_events(data: bytes, *, source: str = "recording") -> list[Event]:
    """Events of a recording given as a JSON array or as ``{"result": [...]}``."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidInput(source, "not JSON") from None
    if isinstance(document, dict) and isinstance(document.get("result"), list):
        document = document["result"]
    if not isinstance(document, list):
        raise InvalidInput(source, 'expected a JSON array of events or {"result": [...]}')
    for index, event in enumerate(document):
        if not isinstance(event, dict) or "type" not in event:
            raise InvalidInput(f"{source}[{index}]", "not an rrweb event (an object with 'type')")
    return document


def split_events(
    events: Sequence[Event], *, segment_seconds: float = SEGMENT_SECONDS
) -> Iterator[list[Event]]:
    """Group events into segments: a new one every `segment_seconds` of activity or at a snapshot.

    A segment starts at its first event and holds what follows within the window; an idle gap
    therefore produces no empty segment. A meta event (or a full snapshot not right after one)
    starts a new segment, as a page load does in the SDK. Events without a timestamp stay in the
    current segment.
    """
    window_ms = segment_seconds * 1000
    current: list[Event] = []
    started_at: float | None = None
    for event in events:
        timestamp = event.get("timestamp")
        starts_page = event.get("type") == EVENT_META or (
            event.get("type") == EVENT_FULL_SNAPSHOT
            and not (current and current[-1].get("type") == EVENT_META)
        )
        window_over = (
            isinstance(timestamp, int | float)
            and started_at is not None
            and timestamp - started_at >= window_ms
        )
        if current and (starts_page or window_over):
            yield current
            current, started_at = [], None
        current.append(event)
        if started_at is None and isinstance(timestamp, int | float):
            started_at = float(timestamp)
    if current:
        yield current


def segment_bodies(
    events: Sequence[Event], *, segment_seconds: float = SEGMENT_SECONDS
) -> list[bytes]:
    """The JSON body of each segment, in segment-id order."""
    return [orjson.dumps(chunk) for chunk in split_events(events, segment_seconds=segment_seconds)]


# -- scanning a segment's JSON array without building it ------------------------------------
#
# A segment is stored as the bytes that were sent, so validation only has to say "this is one
# JSON array" and where each top-level event starts and ends, plus the few shallow fields that
# classification reads (type; data.plugin, data.tag; data.payload.category, data.payload.op).
# msgspec does that in C without building objects for what it skips (msgspec.Raw keeps a byte
# span). Two things it refuses that browsers produce are handled around it:
#
# - lone UTF-16 surrogate escapes (a text node cut mid-emoji): every surrogate escape is
#   swapped for a same-length plain escape in a scratch copy that is only scanned, never stored,
#   so offsets are unchanged and the stored bytes keep the original escape;
# - nesting deeper than its recursion limit: the iterative scanner below, one token at a time
#   with an explicit stack, takes over (slower, and only for such rare segments).

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_PLAIN_ESCAPE = rb"\\u0041"
_WHITESPACE = re.compile(rb"[ \t\n\r]*")
_SEPARATOR = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
# Scalars worth decoding for classification: short ones (an rrweb type or a plugin name).
_SHALLOW_LIMIT = 256
MAX_EVENTS = 1_000_000


_ABSENT = msgspec.Raw(b"")


class _PayloadHead(msgspec.Struct):
    category: msgspec.Raw = _ABSENT
    op: msgspec.Raw = _ABSENT


class _DataHead(msgspec.Struct):
    plugin: msgspec.Raw = _ABSENT
    tag: msgspec.Raw = _ABSENT
    payload: msgspec.Raw = _ABSENT


class _EventHead(msgspec.Struct):
    type: msgspec.Raw = _ABSENT
    data: msgspec.Raw = _ABSENT


_ARRAY_OF_RAW = msgspec.json.Decoder(list[msgspec.Raw])
_EVENT_HEAD = msgspec.json.Decoder(_EventHead)
_DATA_HEAD = msgspec.json.Decoder(_DataHead)
_PAYLOAD_HEAD = msgspec.json.Decoder(_PayloadHead)


@dataclass(frozen=True, slots=True)
class Head:
    """The shallow fields of one event that classification needs (None: absent or not wanted).

    `is_object`, `data_is_object` and `payload_is_object` say whether those levels are JSON
    objects; the scalars are decoded only when short.
    """

    is_object: bool = False
    type: object = None
    data_is_object: bool = False
    plugin: object = None
    tag: object = None
    payload_is_object: bool = False
    category: object = None
    op: object = None


@dataclass(frozen=True, slots=True)
class Scan:
    """A valid JSON array's top-level elements: byte spans [start, stop) and shallow heads.

    Compact on purpose (memory per event, not per byte, is what many tiny events cost): the
    spans are two arrays of offsets, and `heads` holds one shared object per distinct head.
    """

    starts: array[int]
    stops: array[int]
    heads: list[Head]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The (start, stop) pairs, built on demand (tests and small segments)."""
        return list(zip(self.starts, self.stops, strict=True))


class _Collector:
    """Spans and interned heads as they are found."""

    __slots__ = ("_known", "heads", "starts", "stops")

    def __init__(self) -> None:
        self.starts: array[int] = array("Q")
        self.stops: array[int] = array("Q")
        self.heads: list[Head] = []
        self._known: dict[Head, Head] = {}

    def add(self, start: int, stop: int, head: Head) -> None:
        self.starts.append(start)
        self.stops.append(stop)
        self.heads.append(self._known.setdefault(head, head))

    def scan(self) -> Scan:
        return Scan(self.starts, self.stops, self.heads)


def scan_array(body: bytes, *, field: str = "payload.body") -> Scan:
    """Validate `body` as one JSON array and find its events; InvalidInput naming `field`.

    Accepts any valid JSON (any depth, lone surrogate escapes); never recurses per nesting
    level in Python and builds no objects for the events' content.
    """
    scratch = _SURROGATE_ESCAPE.sub(_PLAIN_ESCAPE, body) if b"\\u" in body else body
    try:
        return _scan_fast(scratch, field)
    except RecursionError:
        return _scan_iteratively(scratch, field)


def _scan_fast(scratch: bytes, field: str) -> Scan:
    try:
        raws = _ARRAY_OF_RAW.decode(scratch)
    except msgspec.ValidationError:
        raise InvalidInput(field, "not a JSON array") from None
    except msgspec.DecodeError as error:
        raise InvalidInput(field, f"not valid JSON ({_where(error)})") from None
    if len(raws) > MAX_EVENTS:
        raise InvalidInput(field, f"more than {MAX_EVENTS} events")
    found = _Collector()
    position = _WHITESPACE.match(scratch, 0).end() + 1  # type: ignore[union-attr]
    for index in range(len(raws)):
        raw = raws[index]
        # Drop each Raw once read: 48 bytes an event, the largest cost of many tiny events.
        raws[index] = _ABSENT
        if index:
            position = _SEPARATOR.match(scratch, position).end()  # type: ignore[union-attr]
        else:
            position = _WHITESPACE.match(scratch, position).end()  # type: ignore[union-attr]
        stop = position + len(raw)
        # memcmp: comparing memoryviews goes element by element, which cost half the scan.
        if not scratch.startswith(raw, position):
            raise AssertionError("event span does not match the scanned element")
        found.add(position, stop, _head_of(raw))
        position = stop
    return found.scan()


def _where(error: Exception) -> str:
    # msgspec says "JSON is malformed: <what> (byte N)": a position, never content.
    text = str(error)
    return text.split(": ", 1)[-1] if text.startswith("JSON is malformed") else "malformed"


def _small(raw: msgspec.Raw) -> object:
    # Only short scalars: classification compares numbers and strings, never containers.
    if not raw or len(raw) > _SHALLOW_LIMIT or bytes(memoryview(raw)[:1]) in (b"[", b"{"):
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _head_of(raw: msgspec.Raw) -> Head:
    try:
        event = _EVENT_HEAD.decode(raw)
    except msgspec.ValidationError:
        return Head()
    data = None
    if event.data:
        try:
            data = _DATA_HEAD.decode(event.data)
        except msgspec.ValidationError:
            data = None
    payload = None
    if data is not None and data.payload:
        try:
            payload = _PAYLOAD_HEAD.decode(data.payload)
        except msgspec.ValidationError:
            payload = None
    return Head(
        is_object=True,
        type=_small(event.type),
        data_is_object=data is not None,
        plugin=_small(data.plugin) if data else None,
        tag=_small(data.tag) if data else None,
        payload_is_object=payload is not None,
        category=_small(payload.category) if payload else None,
        op=_small(payload.op) if payload else None,
    )


# The iterative scanner: JSON grammar of RFC 8259 token by token, with an explicit stack.
_TOKEN = re.compile(
    rb"[ \t\n\r]*(?:"
    # Possessive: the old `(?:char|escape)*` kept a backtracking frame per character (x150
    # memory over a long string); this keeps none.
    rb'(?P<string>"(?:[^"\\\x00-\x1f]++|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*+")'
    rb"|(?P<open>[\[{])|(?P<close>[\]}])|(?P<comma>,)|(?P<colon>:)"
    rb"|(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<literal>true|false|null))"
)
_HEAD_FIELDS = {
    ("type",): "type",
    ("data", "plugin"): "plugin",
    ("data", "tag"): "tag",
    ("data", "payload", "category"): "category",
    ("data", "payload", "op"): "op",
}


@dataclass(slots=True)
class _Level:
    """One open container: '[' or '{', the key now being read (objects), what comes next."""

    kind: int
    key: str | None = None
    # expecting: "value", "value_or_close", "key", "key_or_close", "colon", "comma_or_close"
    expecting: str = "value_or_close"


def _scan_iteratively(data: bytes, field: str) -> Scan:
    found = _Collector()
    stack: list[_Level] = []
    fields: dict[str, object] = {}
    objects: set[tuple[str, ...]] = set()
    element_start = 0
    position = 0
    end = len(data)
    done = False

    def fail(what: str) -> InvalidInput:
        return InvalidInput(field, f"not valid JSON ({what} at byte {position})")

    while True:
        match = _TOKEN.match(data, position)
        if match is None:
            if _WHITESPACE.match(data, position).end() == end:  # type: ignore[union-attr]
                break
            raise fail("invalid character")
        kind = match.lastgroup
        token_start = match.start(kind)  # type: ignore[arg-type]
        if done:
            raise fail("trailing characters")
        if not stack:
            if kind != "open" or data[token_start] != ord("["):
                raise InvalidInput(field, "not a JSON array")
            stack.append(_Level(ord("[")))
            position = match.end()
            continue
        level = stack[-1]
        top = len(stack) == 1
        if kind in ("string", "number", "literal", "open"):
            if level.expecting in ("key", "key_or_close"):
                if kind != "string":
                    raise fail("expected a key")
                level.key = _decoded_key(match.group(kind)) if len(stack) <= 4 else None
                level.expecting = "colon"
                position = match.end()
                continue
            if level.expecting not in ("value", "value_or_close"):
                raise fail("expected a separator")
            if top:
                element_start = token_start
                fields, objects = {}, set()
            path = _path(stack)
            if path is not None:
                _forget(path, fields, objects)  # a repeated key: the last one counts
            if kind == "open":
                if data[token_start] == ord("{") and path is not None and len(path) <= 2:
                    objects.add(path)
                level.expecting = "comma_or_close"
                opened = data[token_start]
                stack.append(
                    _Level(
                        opened, expecting="key_or_close" if opened == ord("{") else "value_or_close"
                    )
                )
            else:
                if path is not None and path in _HEAD_FIELDS:
                    fields[_HEAD_FIELDS[path]] = _small_token(match.group(kind))
                level.expecting = "comma_or_close"
                if top:
                    _close_element(found, element_start, match.end(), fields, objects, field)
            position = match.end()
            continue
        if kind == "comma":
            if level.expecting != "comma_or_close":
                raise fail("unexpected comma")
            level.expecting = "key" if level.kind == ord("{") else "value"
        elif kind == "colon":
            if level.expecting != "colon":
                raise fail("unexpected colon")
            level.expecting = "value"
        else:  # close
            closing = data[token_start]
            wanted = ord("]") if level.kind == ord("[") else ord("}")
            if closing != wanted or level.expecting not in (
                "comma_or_close",
                "value_or_close",
                "key_or_close",
            ):
                raise fail("unexpected close")
            stack.pop()
            if not stack:
                done = True
            elif len(stack) == 1:
                _close_element(found, element_start, match.end(), fields, objects, field)
        position = match.end()
    if not done:
        raise InvalidInput(field, "not valid JSON (unexpected end)")
    return found.scan()


def _forget(
    path: tuple[str, ...], fields: dict[str, object], objects: set[tuple[str, ...]]
) -> None:
    for known in [p for p in objects if p[: len(path)] == path]:
        objects.discard(known)
    for known, name in _HEAD_FIELDS.items():
        if known[: len(path)] == path:
            fields.pop(name, None)


def _path(stack: list[_Level]) -> tuple[str, ...] | None:
    """The keys from the event down to the value being read (None: inside an array, too deep)."""
    if len(stack) > 4:
        return None
    keys = []
    for level in stack[1:]:
        if level.kind != ord("{") or level.key is None:
            return None
        keys.append(level.key)
    return tuple(keys)


def _close_element(
    found: _Collector,
    start: int,
    stop: int,
    fields: dict[str, object],
    objects: set[tuple[str, ...]],
    field: str,
) -> None:
    if len(found.starts) >= MAX_EVENTS:
        raise InvalidInput(field, f"more than {MAX_EVENTS} events")
    found.add(
        start,
        stop,
        Head(
            is_object=() in objects,
            type=fields.get("type"),
            data_is_object=("data",) in objects,
            plugin=fields.get("plugin"),
            tag=fields.get("tag"),
            payload_is_object=("data", "payload") in objects,
            category=fields.get("category"),
            op=fields.get("op"),
        ),
    )


def _decoded_key(token: bytes) -> str | None:
    value = _small_token(token)
    return value if isinstance(value, str) else None


def _small_token(token: bytes) -> object:
    if len(token) > _SHALLOW_LIMIT:
        return None
    try:
        return msgspec.json.decode(token)
    except msgspec.DecodeError:
        return None
