"""Typed parts: split a segment's rrweb events by what views need, and merge them back exactly.

Parts (pure, no I/O):

- ``dom``: meta, full snapshot and incremental snapshot events (what the player draws);
- ``console``: what Sentry's console tab lists (breadcrumbs of category ``console``), and rrweb
  console plugin events;
- ``network``: what Sentry's network tab shows (every ``navigation.*`` and ``resource.*``
  performance span, fetch and xhr included, and the SDK's ``options`` frame, whose
  ``networkDetailHasUrls`` the tab reads), and rrweb network plugin events;
- ``timeline``: everything else small a timeline needs (load events, other breadcrumbs such as
  clicks and navigations, other spans such as memory and web vitals, other custom and plugin
  events).

The mapping to Sentry's tabs, and where in Sentry's frontend each rule comes from, is in
docs/parts.md.

A part is a set of byte spans of the original segment, never a re-serialization: the segment's
bytes are cut into consecutive chunks (each chunk is the separator before a run of consecutive
events of one part, then those events with the separators between them; the last one also holds
the closing bracket), and each part stores its chunks behind a one-line header
``{"spans":[[offset, separator length, events length], ...],"size":N}``. Merging
every part puts the chunks back at their offsets, which must tile the segment exactly: the
result is the bytes that were sent. When all of a segment's events belong to one part (most
segments are pure DOM), that part's body is the segment itself. A segment stored whole (parts
off) has the single part ``recording``. A mobile replay's video is the part ``video``: sealed
and packed like the others, never merged into the JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from vault_store.core.rrweb import Classifier, Head, Scan, scan_array
from vault_store.errors import CorruptData, InvalidInput

RECORDING = "recording"
DOM, CONSOLE, NETWORK, TIMELINE = "dom", "console", "network", "timeline"
VIDEO = "video"
TYPED_PARTS = (DOM, CONSOLE, NETWORK, TIMELINE)
ALL_PARTS = (RECORDING, *TYPED_PARTS, VIDEO)

_DRAWN = {2, 3, 4}  # full snapshot, incremental snapshot, meta
_PLUGIN = 6
# Sentry's network tab: spans whose op starts with one of these (replayReader getNetworkFrames).
_NETWORK_OP_PREFIXES = ("navigation.", "resource.")
_SPANS_HEADER = b'{"spans":'
_CODES = {part: code for code, part in enumerate(TYPED_PARTS)}
# Possessive: a greedy repeat of a backreference keeps backtracking state per byte (x100).
_RUN = re.compile(rb"(.)\1*+", re.DOTALL)


def classify(event: Any) -> str:
    """The part an rrweb event (already parsed) belongs to; the same rule as `classify_head`."""
    if not isinstance(event, dict):
        return classify_head(Head())
    data = event.get("data")
    payload = data.get("payload") if isinstance(data, dict) else None
    return classify_head(
        Head(
            is_object=True,
            type=event.get("type"),
            data_is_object=isinstance(data, dict),
            plugin=data.get("plugin") if isinstance(data, dict) else None,
            tag=data.get("tag") if isinstance(data, dict) else None,
            payload_is_object=isinstance(payload, dict),
            category=payload.get("category") if isinstance(payload, dict) else None,
            op=payload.get("op") if isinstance(payload, dict) else None,
        )
    )


def classify_head(head: Head) -> str:
    """The part of an event, from the shallow fields the scanner read."""
    if not head.is_object:
        return TIMELINE
    kind = head.type
    if _is_number(kind) and kind in _DRAWN:
        return DOM
    if not head.data_is_object:
        return TIMELINE
    # Sentry's frontend sorts frames by data.tag alone, whatever the type (hydrateFrames); only
    # what the player draws (above) is never moved out of dom.
    category = head.category if head.payload_is_object else None
    op = head.op if head.payload_is_object else None
    if head.tag == "breadcrumb" and category == "console":
        return CONSOLE
    if (
        head.tag == "performanceSpan"
        and isinstance(op, str)
        and op.startswith(_NETWORK_OP_PREFIXES)
    ):
        return NETWORK
    if head.tag == "options":
        return NETWORK
    if _is_number(kind) and kind == _PLUGIN:
        plugin = head.plugin if isinstance(head.plugin, str) else ""
        if plugin.startswith("rrweb/console"):
            return CONSOLE
        if plugin.startswith("rrweb/network"):
            return NETWORK
    return TIMELINE


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _code_of(head: Head) -> int:
    return _CODES[classify_head(head)]


# What the scan needs to give each event its part as it validates (one byte an event, the
# index in TYPED_PARTS): what the player draws is `dom` by its type alone, whatever its data.
CLASSIFIER = Classifier(by_type=dict.fromkeys(_DRAWN, _CODES[DOM]), of_head=_code_of)


def scan(body: bytes, *, field: str = "payload.body") -> Scan:
    """`body` validated as one JSON array, each event's part found in the same pass."""
    return scan_array(body, field=field, classifier=CLASSIFIER)


def split(body: bytes, scanned: Scan | None = None) -> dict[str, bytes]:
    """A segment's JSON array as {part: sealed-frame body}; at least one part, never empty.

    `scanned` is `body` already scanned (ingest validation scans it once, with `scan`);
    without it the body is scanned here. Every part is made of byte spans of `body`: `merge` of
    all of them is `body`.
    """
    if scanned is None:
        scanned = scan(body)
    owners = scanned.codes
    if owners is None:
        # Scanned without the classifier: heads are read one at a time, never kept.
        owners = bytearray(_code_of(head) for head in scanned.heads)
    count = len(owners)
    if not count:
        # An empty segment still exists: keep it as an empty drawing part.
        return {DOM: body}
    if owners.count(owners[0]) == count:
        # One part holds everything, in order: store the original bytes (no spans needed).
        return {TYPED_PARTS[owners[0]]: body}
    present = sorted(set(owners))
    # Chunks tile the body: each is a run of consecutive events of one part, from the previous
    # run's end to the run's last event's end (the last one to the end of the body, closing
    # bracket included). Headers and chunks are written straight into one buffer per part, and
    # a run is one entry, so many tiny events cost a few bytes of header, not one entry each.
    headers = {code: bytearray() for code in present}
    pieces = {code: bytearray() for code in present}
    view = memoryview(body)
    starts, stops = scanned.starts, scanned.stops
    if len(starts) != count:
        raise AssertionError("the scan's codes and spans disagree")
    previous = 0
    for run in _RUN.finditer(owners):
        first, last = run.start(), run.end() - 1
        code = owners[first]
        start, stop = starts[first], stops[last]
        chunk_stop = len(body) if last == count - 1 else stop
        headers[code] += b"[%d,%d,%d]," % (previous, start - previous, stop - start)
        pieces[code] += view[previous:chunk_stop]
        previous = chunk_stop
    bodies = {}
    size = b'],"size":%d}\n' % len(body)
    for code in present:
        # The header is what orjson.dumps({"spans": [...], "size": N}) writes.
        header, chunk_bytes = headers.pop(code), pieces.pop(code)
        bodies[TYPED_PARTS[code]] = b"".join(
            [_SPANS_HEADER, b"[", memoryview(header)[:-1], size, chunk_bytes]
        )
        del header, chunk_bytes
    return bodies


def merge(parts: Sequence[tuple[str, bytes]], wanted: Iterable[str] | None = None) -> bytes:
    """One segment's events (of the wanted parts) as a JSON array.

    Every part wanted: exactly the bytes that were sent. Some parts: their events, in their
    original order, each event's bytes as sent (and consecutive events of one part with the
    separator that was sent between them).
    """
    chosen = set(wanted) if wanted is not None else None
    parts = [(part, body) for part, body in parts if part != VIDEO]
    if not parts:
        return b"[]"
    if len(parts) == 1 and _is_array(parts[0][1]):
        part, body = parts[0]
        if chosen is None or part in chosen:
            return body
        if part != RECORDING:
            return b"[]"  # the segment's only part is not wanted
        # Stored whole (parts off): filter the events by part at read time.
        whole = scan(body, field=RECORDING)
        wanted_codes = {_CODES[part] for part in chosen if part in _CODES}
        kept = [
            body[start:stop]
            for start, stop, code in zip(whole.starts, whole.stops, whole.codes or b"", strict=True)
            if code in wanted_codes
        ]
        return b"[" + b",".join(kept) + b"]"
    if any(_is_array(body) for _part, body in parts):
        raise CorruptData("a segment stored whole also has typed parts")
    if any(not body.startswith(_SPANS_HEADER) for _part, body in parts):
        return _merge_envelopes(parts, chosen)
    return _merge_spans(parts, chosen)


def _merge_spans(parts: Sequence[tuple[str, bytes]], chosen: set[str] | None) -> bytes:
    placed: list[tuple[int, int, int, memoryview]] = []
    sizes = set()
    for part, body in parts:
        header, newline, rest = body.partition(b"\n")
        if not newline:
            raise CorruptData(f"part {part} has no span header")
        try:
            described = orjson.loads(header)
            spans = [(int(o), int(s), int(n)) for o, s, n in described["spans"]]
            sizes.add(int(described["size"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise CorruptData(f"part {part} has a bad span header") from None
        view = memoryview(rest)
        position = 0
        for index, (offset, separator, length) in enumerate(spans):
            # A chunk runs to the next chunk's offset; the last chunk of a part is sized by the
            # bytes left (it may hold the closing bracket).
            size = len(rest) - position if index == len(spans) - 1 else separator + length
            if chosen is None or part in chosen:
                placed.append((offset, separator, length, view[position : position + size]))
            position += size
    if len(sizes) != 1:
        raise CorruptData("parts of one segment disagree on its size")
    placed.sort(key=lambda item: item[0])
    if chosen is None:
        expected = 0
        for offset, _separator, _length, chunk in placed:
            if offset != expected:
                raise CorruptData("the parts of a segment do not tile it")
            expected += len(chunk)
        if expected != next(iter(sizes)):
            raise CorruptData("the parts of a segment do not tile it")
        return b"".join(chunk for *_head, chunk in placed)
    events = [
        bytes(chunk[separator : separator + length]) for _o, separator, length, chunk in placed
    ]
    return b"[" + b",".join(events) + b"]"


def _merge_envelopes(parts: Sequence[tuple[str, bytes]], chosen: set[str] | None) -> bytes:
    """Parts written before byte spans: ``{"index": [...], "events": [...]}`` (still read)."""
    placed: list[tuple[int, Any]] = []
    for part, body in parts:
        if chosen is not None and part not in chosen:
            continue
        envelope = orjson.loads(body)
        placed.extend(zip(envelope["index"], envelope["events"], strict=True))
    placed.sort(key=lambda item: item[0])
    return orjson.dumps([event for _index, event in placed])


def _is_array(body: bytes) -> bool:
    return body.lstrip()[:1] == b"["


def parse_filter(text: str | None, *, field: str = "part") -> frozenset[str] | None:
    """``console,network`` -> the set of typed parts; None or empty means every part."""
    if text is None or not text.strip():
        return None
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = names - set(TYPED_PARTS)
    if unknown:
        raise InvalidInput(
            field, f"unknown part {sorted(unknown)[0]!r}; expected {', '.join(TYPED_PARTS)}"
        )
    return names
