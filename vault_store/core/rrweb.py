"""Split a plain rrweb recording into segments the way a browser SDK flushes them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

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
