"""Split a plain rrweb recording into segments the way a browser SDK flushes them."""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, cast, overload

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
# span). With a classifier (typed parts), the usual body is read in one pass that validates it
# and gives each event its part code; its spans are found only if the segment holds several
# parts. Two things msgspec refuses that browsers produce are handled around it:
#
# - lone UTF-16 surrogate escapes (a text node cut mid-emoji): when msgspec refuses a body that
#   holds one, every surrogate escape is swapped for a same-length plain escape in a scratch
#   copy that is only scanned, never stored, so offsets are unchanged and the stored bytes keep
#   the original escape (a body without one never pays for the search);
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


class _DataObject(msgspec.Struct):
    plugin: msgspec.Raw = _ABSENT
    tag: msgspec.Raw = _ABSENT
    payload: _PayloadHead | None = None


class _EventObject(msgspec.Struct):
    type: msgspec.Raw = _ABSENT
    data: _DataObject | None = None


_ARRAY_OF_RAW = msgspec.json.Decoder(list[msgspec.Raw])
# The usual event (`data` and `payload` objects, null or absent) in one pass over its bytes; any
# other shape is read by the three decodes of `_head_stepwise` (17% of a split's time saved).
_EVENT_OBJECT = msgspec.json.Decoder(_EventObject)
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
class Classifier:
    """How the scan gives each event a one-byte code (its part): `by_type` for the rrweb types
    whose code depends on the type alone, `of_head` for any other event."""

    by_type: Mapping[int, int]
    of_head: Callable[[Head], int]
    # The code that every type of `by_type` has, when they all have the same (dom: meta, full
    # and incremental snapshots), with those types; None otherwise. Set from `by_type`.
    shared: tuple[int, frozenset[int]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        codes = set(self.by_type.values())
        if len(codes) == 1:
            object.__setattr__(self, "shared", (codes.pop(), frozenset(self.by_type)))


class Scan:
    """A valid JSON array's top-level elements: byte spans [start, stop), shallow heads, codes.

    Compact on purpose (memory per event, not per byte, is what many tiny events cost): the
    spans are two arrays of offsets, found when first asked for (a segment whose events all
    have one code never needs them), `heads` reads each event's head from the body when asked
    (nothing is kept per event), and `codes`, when the scan was given a classifier, is one byte
    an event.
    """

    __slots__ = ("_body", "_bulk", "_field", "_found", "_heads", "codes")

    def __init__(
        self,
        body: bytes,
        field: str,
        *,
        found: tuple[array[int], array[int]] | None = None,
        heads: Sequence[Head] | None = None,
        codes: bytearray | None = None,
        bulk: bool = False,
    ) -> None:
        self._body, self._field, self._found, self._heads = body, field, found, heads
        self.codes = codes
        # The elements are known to be at least 20 bytes long: their spans may be decoded in
        # one call without counting them first.
        self._bulk = bulk

    def _spans(self) -> tuple[array[int], array[int]]:
        if self._found is None:
            # The body was validated by the scan: this second pass only finds the offsets.
            found = _find_spans(self._body, self._field, bulk=self._bulk)
            self._found = (found.starts, found.stops)
        return self._found

    @property
    def starts(self) -> array[int]:
        """Where each event starts."""
        return self._spans()[0]

    @property
    def stops(self) -> array[int]:
        """Where each event ends (exclusive)."""
        return self._spans()[1]

    @property
    def heads(self) -> Sequence[Head]:
        """Each event's head (read from the body one at a time unless the scanner kept them)."""
        if self._heads is not None:
            return self._heads
        starts, stops = self._spans()
        return _Heads(self._body, starts, stops, self._field)

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The (start, stop) pairs, built on demand (tests and small segments)."""
        return list(zip(self.starts, self.stops, strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scan):
            return NotImplemented
        return (self.starts, self.stops) == (other.starts, other.stops) and list(
            self.heads
        ) == list(other.heads)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<scan of {len(self.starts)} events>"


class _Heads(Sequence[Head]):
    """Each event's head, read from the body on demand (one event at a time, nothing kept)."""

    __slots__ = ("_body", "_field", "_starts", "_stops")

    def __init__(self, body: bytes, starts: array[int], stops: array[int], field: str) -> None:
        self._body, self._starts, self._stops, self._field = body, starts, stops, field

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> Head: ...
    @overload
    def __getitem__(self, index: slice) -> list[Head]: ...
    def __getitem__(self, index: int | slice) -> Head | list[Head]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _head_at(self._body, self._starts[index], self._stops[index], self._field)

    def __iter__(self) -> Iterator[Head]:
        body, field = self._body, self._field
        for start, stop in zip(self._starts, self._stops, strict=True):
            yield _head_at(body, start, stop, field)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} heads>"


def _head_at(body: bytes, start: int, stop: int, field: str) -> Head:
    event: bytes | memoryview = memoryview(body)[start:stop]
    try:
        try:
            return _head_of(event)
        except msgspec.DecodeError:
            # A lone surrogate escape (the body is valid: the scan said so): read it as the
            # scan did, surrogate escapes swapped (same length).
            return _head_of(_SURROGATE_ESCAPE.sub(_PLAIN_ESCAPE, event))
    except RecursionError:
        # Deeper than msgspec goes: this one event, token by token.
        return _scan_iteratively(b"[" + bytes(event) + b"]", field).heads[0]


class _Collector:
    """Spans as they are found (and heads, for the iterative scanner's own checks)."""

    __slots__ = ("heads", "keep_heads", "starts", "stops")

    def __init__(self, size: int, *, keep_heads: bool) -> None:
        # 4 bytes an offset while the body allows it (the body cap is 100 MB).
        code = "I" if size < 2**32 else "Q"
        self.starts: array[int] = array(code)
        self.stops: array[int] = array(code)
        self.heads: list[Head] = []
        self.keep_heads = keep_heads

    def add(self, start: int, stop: int, head: Head | None = None) -> None:
        self.starts.append(start)
        self.stops.append(stop)
        if self.keep_heads and head is not None:
            self.heads.append(head)

    def scan(self, body: bytes, field: str) -> Scan:
        spans = (self.starts, self.stops)
        return Scan(body, field, found=spans, heads=self.heads if self.keep_heads else None)


def scan_array(
    body: bytes, *, field: str = "payload.body", classifier: Classifier | None = None
) -> Scan:
    """Validate `body` as one JSON array and find its events; InvalidInput naming `field`.

    Accepts any valid JSON (any depth, lone surrogate escapes); never recurses per nesting
    level in Python and builds no objects for the events' content. With a `classifier`, each
    event gets its code in the same pass (`Scan.codes`). Memory: two offsets and a code an
    event, whatever the events hold (heads are read again when asked for).
    """
    if classifier is not None:
        usual = _scan_usual(body, field, classifier)
        if usual is not None:
            return usual
    found = _find_spans(body, field)
    scan = Scan(body, field, found=(found.starts, found.stops))
    if classifier is not None:
        # One head at a time, never kept: a code is one byte an event.
        codes = bytearray(len(found.starts))
        for index, head in enumerate(scan.heads):
            codes[index] = classifier.of_head(head)
        scan.codes = codes
    return scan


def _find_spans(body: bytes, field: str, *, bulk: bool = False) -> _Collector:
    """The general scan: the events' offsets (of any valid array, at any depth)."""
    try:
        return _spans_of(body, field, bulk=bulk)
    except InvalidInput:
        # msgspec refuses lone surrogate escapes: scan a scratch copy with every surrogate
        # escape swapped for a same-length plain one (offsets unchanged; only scanned, never
        # stored, and dropped with the scan). Only bodies that hold one pay for the search.
        if b"\\u" not in body:
            raise
        scratch = _SURROGATE_ESCAPE.sub(_PLAIN_ESCAPE, body)
        if scratch == body:
            raise
        return _spans_of(scratch, field)


def _spans_of(text: bytes, field: str, *, bulk: bool = False) -> _Collector:
    try:
        return _scan_fast(text, field, bulk=bulk)
    except RecursionError:
        return _iterate(text, field, keep_heads=False)


class _EventTop(msgspec.Struct, gc=False):
    # The usual event: an object with an integer (or null) type and a data field, kept as a
    # span and decoded only for events whose type does not decide their code. Both fields are
    # required, so an element costs at most about 120 bytes (this object, its list slot, the
    # span, an integer) and is at least 20 bytes long ('{"type":0,"data":0},'): the decode
    # stays within about 6 times the body without counting the elements first.
    type: int | None
    data: msgspec.Raw


_EVENT_TOPS = msgspec.json.Decoder(list[_EventTop])


def _scan_usual(body: bytes, field: str, classifier: Classifier) -> Scan | None:
    """Validation and codes in one msgspec pass, when every event has the usual shape.

    None (the general scan decides) for any other body: an element that is not such an
    object, invalid JSON (the error is worded by the general scan), a lone surrogate escape or
    too many events. Most segments have one code and are stored whole: their spans are never
    needed. A segment of several parts whose events are large gets its spans from the fields
    just decoded; any other finds them with a second pass when asked.
    """
    try:
        events = _EVENT_TOPS.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    count = len(events)
    if count > MAX_EVENTS:
        return None
    types = [event.type for event in events]
    shared = classifier.shared
    if shared is not None and shared[1].issuperset(types):
        # Most segments: every event is drawn (one set check in C, no code looked up per event).
        codes = bytearray(shared[:1]) * count
    else:
        # One byte an event from the type alone, in C; only the few events whose type does not
        # decide their code (breadcrumbs, spans, plugins: not what the player draws) read a
        # head. (A null type is no key of the mapping: its get gives the default like any other.)
        code_of_type = cast(_CodeOfType, classifier.by_type.get)
        codes = bytearray(map(code_of_type, types, repeat(_UNDECIDED)))
        index = codes.find(_UNDECIDED)
        while index >= 0:
            event = events[index]
            codes[index] = classifier.of_head(_head_with(event.type, event.data))
            index = codes.find(_UNDECIDED, index + 1)
    if not count or codes.count(codes[0]) == count:
        return Scan(body, field, codes=codes, bulk=True)
    found = _spans_of_events(body, events) if len(body) >= _LARGE_EVENT * count else None
    return Scan(body, field, codes=codes, bulk=True, found=found)


# Built once: a subscripted Callable is a new object at every evaluation (0.8 us a segment).
_CodeOfType = Callable[[int | None, int], int]
# Codes are part indexes (under 255): this marks an event whose head must be read.
_UNDECIDED = 255
# Events at least this long on average are found again from their decoded fields (a few byte
# comparisons an event) rather than by decoding the body a second time (a pass over every byte).
_LARGE_EVENT = 1024
# The orders, besides rrweb's own (type, data, timestamp: _event_end's first check), in which
# events are written: the Sentry SDK's (type, timestamp, data), the one some recorders use (data
# first), and without a timestamp.
_FIELD_ORDERS = (
    ("type", "timestamp", "data"),
    ("data", "type", "timestamp"),
    ("type", "data"),
    ("data", "type"),
)
_DATA_KEY = b'"data":'
# The timestamp is not decoded: it is matched as a JSON number (RFC 8259), whole.
_TIMESTAMP_FIELD = re.compile(rb'"timestamp":-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?')
_TIMESTAMP_TAIL = re.compile(b"," + _TIMESTAMP_FIELD.pattern + b"}")


def _spans_of_events(body: bytes, events: list[_EventTop]) -> tuple[array[int], array[int]] | None:
    """Each event's span, when each one is written exactly as its fields (type, data and a
    numeric timestamp) in a usual order with no whitespace inside; None otherwise (a second
    pass finds them).

    Exact: an event's span is taken only when its bytes are, byte for byte, an object of its
    decoded type and data (and a number), which starts where the previous element's separator
    ends; such an object is a complete JSON value, so it is the whole element.
    """
    found = _Collector(len(body), keep_heads=False)
    position = _WHITESPACE.match(body, 0).end() + 1  # type: ignore[union-attr]
    for index, event in enumerate(events):
        pattern = _SEPARATOR if index else _WHITESPACE
        position = pattern.match(body, position).end()  # type: ignore[union-attr]
        stop = _event_end(body, position, event)
        if stop is None:
            return None
        found.add(position, stop)
        position = stop
    return found.starts, found.stops


def _event_end(body: bytes, start: int, event: _EventTop) -> int | None:
    """Where the event written at `start` ends, if it is exactly its fields in a usual order."""
    kind = b'"type":null' if event.type is None else b'"type":%d' % event.type
    data = event.data
    # rrweb's own order first, in three comparisons; then the other usual orders, field by field.
    head = b"{" + kind + b"," + _DATA_KEY
    if body.startswith(head, start) and body.startswith(data, start + len(head)):
        tail = _TIMESTAMP_TAIL.match(body, start + len(head) + len(data))
        if tail is not None:
            return tail.end()
    for order in _FIELD_ORDERS:
        position = start
        for place, name in enumerate(order):
            if not body.startswith(b"," if place else b"{", position):
                break
            position += 1
            if name == "type":
                if not body.startswith(kind, position):
                    break
                position += len(kind)
            elif name == "data":
                if not (
                    body.startswith(_DATA_KEY, position)
                    and body.startswith(data, position + len(_DATA_KEY))
                ):
                    break
                position += len(_DATA_KEY) + len(data)
            else:
                stamp = _TIMESTAMP_FIELD.match(body, position)
                if stamp is None:
                    break
                position = stamp.end()
        else:
            if body.startswith(b"}", position):
                return position + 1
    return None


# A msgspec.Raw costs 48 bytes and its list slot 8: decoding the array in one call is kept for
# bodies whose elements are at least this many bytes apart (a bound from the comma count), so
# that list stays under a few times the body; denser bodies are walked one element at a time.
_RAW_COST = 56
_BYTES_PER_ELEMENT_FOR_BULK = 10
_ANY_RAW = msgspec.json.Decoder(msgspec.Raw)
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")


def _scan_fast(scratch: bytes, field: str, *, bulk: bool = False) -> _Collector:
    if not bulk and (scratch.count(b",") + 1) * _BYTES_PER_ELEMENT_FOR_BULK > len(scratch):
        return _scan_each(scratch, field)
    try:
        raws = _ARRAY_OF_RAW.decode(scratch)
    except msgspec.ValidationError:
        raise InvalidInput(field, "not a JSON array") from None
    except msgspec.DecodeError as error:
        raise InvalidInput(field, f"not valid JSON ({_where(error)})") from None
    if len(raws) > MAX_EVENTS:
        raise InvalidInput(field, f"more than {MAX_EVENTS} events")
    found = _Collector(len(scratch), keep_heads=False)
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
        found.add(position, stop)
        position = stop
    return found


def _scan_each(scratch: bytes, field: str) -> _Collector:
    """The dense case: one element at a time, no object kept per element.

    The whole body is validated first (one Raw, no per-element object); then each element is
    decoded on its own: msgspec stops at the separator after it ("trailing characters (byte
    N)", N one past the separator), and decoding up to that separator gives its exact length.
    """
    try:
        _ANY_RAW.decode(scratch)
    except msgspec.DecodeError as error:
        raise InvalidInput(field, f"not valid JSON ({_where(error)})") from None
    position = _WHITESPACE.match(scratch, 0).end()  # type: ignore[union-attr]
    if scratch[position : position + 1] != b"[":
        raise InvalidInput(field, "not a JSON array")
    found = _Collector(len(scratch), keep_heads=False)
    view = memoryview(scratch)
    position = _WHITESPACE.match(scratch, position + 1).end()  # type: ignore[union-attr]
    if scratch[position : position + 1] == b"]":
        return found
    while True:
        try:
            _ANY_RAW.decode(view[position:])
        except msgspec.DecodeError as error:
            where = _TRAILING.search(str(error))
            if where is None:
                raise AssertionError("an element of a valid array did not end") from None
            separator = position + int(where.group(1)) - 1
        else:
            raise AssertionError("an element of a valid array ran to its end")
        stop = position + len(_ANY_RAW.decode(view[position:separator]))
        if len(found.starts) >= MAX_EVENTS:
            raise InvalidInput(field, f"more than {MAX_EVENTS} events")
        found.add(position, stop)
        if scratch[separator] == ord("]"):
            return found
        position = _WHITESPACE.match(scratch, separator + 1).end()  # type: ignore[union-attr]


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


def _head_of(raw: msgspec.Raw | memoryview | bytes) -> Head:
    try:
        usual = _EVENT_OBJECT.decode(raw)
    except msgspec.ValidationError:
        return _head_stepwise(raw)
    data = usual.data
    payload = data.payload if data is not None else None
    return Head(
        is_object=True,
        type=_small(usual.type),
        data_is_object=data is not None,
        plugin=_small(data.plugin) if data is not None else None,
        tag=_small(data.tag) if data is not None else None,
        payload_is_object=payload is not None,
        category=_small(payload.category) if payload is not None else None,
        op=_small(payload.op) if payload is not None else None,
    )


def _head_stepwise(raw: msgspec.Raw | memoryview | bytes) -> Head:
    try:
        event = _EVENT_HEAD.decode(raw)
    except msgspec.ValidationError:
        return Head()
    return _head_with(_small(event.type), event.data)


def _head_with(kind: object, data_raw: msgspec.Raw) -> Head:
    """An object event's head from its (decoded) type and its `data` as a span."""
    data = None
    if data_raw:
        try:
            data = _DATA_HEAD.decode(data_raw)
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
        type=kind,
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


# The stack holds one byte of container kind and one of state per level (a bracket is one byte
# of input, so a body of nothing but brackets costs about its own size), and keys only for the
# levels a head field can be in.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _COMMA_OR_CLOSE = range(6)
_CLOSABLE = (_COMMA_OR_CLOSE, _VALUE_OR_CLOSE, _KEY_OR_CLOSE)
_ARRAY, _OBJECT = ord("["), ord("{")
_KEYED_LEVELS = 4


def _scan_iteratively(data: bytes, field: str, *, keep_heads: bool = True) -> Scan:
    return _iterate(data, field, keep_heads=keep_heads).scan(data, field)


def _iterate(data: bytes, field: str, *, keep_heads: bool) -> _Collector:
    found = _Collector(len(data), keep_heads=keep_heads)
    kinds = bytearray()
    states = bytearray()
    keys: list[str | None] = []
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
        if not kinds:
            if kind != "open" or data[token_start] != _ARRAY:
                raise InvalidInput(field, "not a JSON array")
            kinds.append(_ARRAY)
            states.append(_VALUE_OR_CLOSE)
            keys.append(None)
            position = match.end()
            continue
        depth = len(kinds)
        state = states[-1]
        top = depth == 1
        if kind in ("string", "number", "literal", "open"):
            if state in (_KEY, _KEY_OR_CLOSE):
                if kind != "string":
                    raise fail("expected a key")
                if depth <= _KEYED_LEVELS:
                    keys[-1] = _decoded_key(match.group(kind))
                states[-1] = _COLON
                position = match.end()
                continue
            if state not in (_VALUE, _VALUE_OR_CLOSE):
                raise fail("expected a separator")
            if top:
                element_start = token_start
                fields, objects = {}, set()
            path = _path(kinds, keys)
            if path is not None:
                _forget(path, fields, objects)  # a repeated key: the last one counts
            if kind == "open":
                opened = data[token_start]
                if opened == _OBJECT and path is not None and len(path) <= 2:
                    objects.add(path)
                states[-1] = _COMMA_OR_CLOSE
                kinds.append(opened)
                states.append(_KEY_OR_CLOSE if opened == _OBJECT else _VALUE_OR_CLOSE)
                if depth < _KEYED_LEVELS:
                    keys.append(None)
            else:
                if path is not None and path in _HEAD_FIELDS:
                    fields[_HEAD_FIELDS[path]] = _small_token(match.group(kind))
                states[-1] = _COMMA_OR_CLOSE
                if top:
                    _close_element(found, element_start, match.end(), fields, objects, field)
            position = match.end()
            continue
        if kind == "comma":
            if state != _COMMA_OR_CLOSE:
                raise fail("unexpected comma")
            states[-1] = _KEY if kinds[-1] == _OBJECT else _VALUE
        elif kind == "colon":
            if state != _COLON:
                raise fail("unexpected colon")
            states[-1] = _VALUE
        else:  # close
            closing = data[token_start]
            wanted = ord("]") if kinds[-1] == _ARRAY else ord("}")
            if closing != wanted or state not in _CLOSABLE:
                raise fail("unexpected close")
            if depth <= _KEYED_LEVELS:
                keys.pop()
            kinds.pop()
            states.pop()
            if not kinds:
                done = True
            elif len(kinds) == 1:
                _close_element(found, element_start, match.end(), fields, objects, field)
        position = match.end()
    if not done:
        raise InvalidInput(field, "not valid JSON (unexpected end)")
    return found


def _forget(
    path: tuple[str, ...], fields: dict[str, object], objects: set[tuple[str, ...]]
) -> None:
    for known in [p for p in objects if p[: len(path)] == path]:
        objects.discard(known)
    for known, name in _HEAD_FIELDS.items():
        if known[: len(path)] == path:
            fields.pop(name, None)


def _path(kinds: bytearray, keys: list[str | None]) -> tuple[str, ...] | None:
    """The keys from the event down to the value being read (None: inside an array, too deep)."""
    if len(kinds) > _KEYED_LEVELS:
        return None
    path = []
    for level in range(1, len(kinds)):
        key = keys[level]
        if kinds[level] != _OBJECT or key is None:
            return None
        path.append(key)
    return tuple(path)


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
    if not found.keep_heads:
        found.add(start, stop)
        return
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
