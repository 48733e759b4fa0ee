"""Typed parts: split a segment's rrweb events by what views need, and merge them back in order.

Parts (pure, no I/O):

- ``dom``: meta, full snapshot and incremental snapshot events (what the player draws);
- ``console``: rrweb console plugin events and Sentry breadcrumbs of category ``console``;
- ``network``: rrweb network plugin events and Sentry performance spans ``resource.fetch`` /
  ``resource.xhr``;
- ``timeline``: everything else small a timeline needs (load events, other breadcrumbs such as
  clicks and navigations, other custom and plugin events).

Each part is stored as its own sealed frame whose body is ``{"index": [...], "events": [...]}``:
the events' positions in the original segment travel, authenticated, with the events, so
reading every part restores the exact original order. When all of a segment's events belong to
one part (most segments are pure DOM), that part's body is the segment's JSON array itself,
byte for byte: nothing to re-serialize at ingest, nothing to merge at read. A segment stored
whole (parts off) has the single part ``recording``, whose body is also the JSON array.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from vault_store.core import jsontree
from vault_store.errors import CorruptData, InvalidInput

RECORDING = "recording"
DOM, CONSOLE, NETWORK, TIMELINE = "dom", "console", "network", "timeline"
TYPED_PARTS = (DOM, CONSOLE, NETWORK, TIMELINE)
ALL_PARTS = (RECORDING, *TYPED_PARTS)

_DRAWN = {2, 3, 4}  # full snapshot, incremental snapshot, meta
_CUSTOM, _PLUGIN = 5, 6
_NETWORK_OPS = {"resource.fetch", "resource.xhr"}


def classify(event: Any) -> str:
    """The part an rrweb event belongs to."""
    if not isinstance(event, dict):
        return TIMELINE
    kind = event.get("type")
    if kind in _DRAWN:
        return DOM
    data = event.get("data")
    if not isinstance(data, dict):
        return TIMELINE
    if kind == _PLUGIN:
        plugin = str(data.get("plugin", ""))
        if plugin.startswith("rrweb/console"):
            return CONSOLE
        if plugin.startswith("rrweb/network"):
            return NETWORK
        return TIMELINE
    if kind == _CUSTOM:
        payload = data.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if data.get("tag") == "breadcrumb" and payload.get("category") == "console":
            return CONSOLE
        if data.get("tag") == "performanceSpan" and payload.get("op") in _NETWORK_OPS:
            return NETWORK
    return TIMELINE


def split(body: bytes, events: list[Any] | None = None) -> dict[str, bytes]:
    """A segment's JSON array as {part: sealed-frame body}; at least one part, never empty.

    `events` is `body` already parsed (ingest validation parses it once), to avoid a second
    parse; without it the body is parsed here.
    """
    if events is None:
        events = jsontree.parse(body)
    indices: dict[str, list[int]] = {}
    grouped: dict[str, list[Any]] = {}
    for index, event in enumerate(events):
        part = classify(event)
        indices.setdefault(part, []).append(index)
        grouped.setdefault(part, []).append(event)
    if not grouped:
        # An empty segment still exists: keep it as an empty drawing part.
        return {DOM: body}
    if len(grouped) == 1:
        # One part holds everything, in order: store the original bytes.
        return {next(iter(grouped)): body}
    return {
        part: orjson.dumps({"index": indices[part], "events": grouped[part]})
        for part in TYPED_PARTS
        if part in grouped
    }


def merge(parts: Sequence[tuple[str, bytes]], wanted: Iterable[str] | None = None) -> bytes:
    """One segment's events (of the wanted parts) as a JSON array, in their original order."""
    chosen = set(wanted) if wanted is not None else None
    if len(parts) == 1 and _is_array(parts[0][1]):
        part, body = parts[0]
        if chosen is None or part in chosen:
            return body
        if part != RECORDING:
            return b"[]"  # the segment's only part is not wanted
        # Stored whole (parts off): filter the events by part at read time.
        return orjson.dumps([e for e in orjson.loads(body) if classify(e) in chosen])
    placed: list[tuple[int, Any]] = []
    for part, body in parts:
        if chosen is not None and part not in chosen:
            continue
        if _is_array(body):
            raise CorruptData("a segment stored whole also has typed parts")
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
