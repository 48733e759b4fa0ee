"""Typed parts: classification, split and merge back in the original order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_store.core.parts import (
    CONSOLE,
    DOM,
    NETWORK,
    RECORDING,
    TIMELINE,
    classify,
    merge,
    parse_filter,
    split,
)
from vault_store.errors import InvalidInput

SAMPLES: list[tuple[dict[str, Any], str]] = [
    ({"type": 4, "data": {"href": "https://x"}}, DOM),
    ({"type": 2, "data": {"node": {}}}, DOM),
    ({"type": 3, "data": {"source": 2, "type": 2}}, DOM),
    ({"type": 0, "data": {}}, TIMELINE),
    ({"type": 1, "data": {}}, TIMELINE),
    (
        {
            "type": 5,
            "data": {"tag": "breadcrumb", "payload": {"category": "console", "message": "hi"}},
        },
        CONSOLE,
    ),
    ({"type": 5, "data": {"tag": "breadcrumb", "payload": {"category": "ui.click"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "breadcrumb", "payload": {"category": "navigation"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "resource.fetch"}}}, NETWORK),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "resource.xhr"}}}, NETWORK),
    # Sentry's network tab: every navigation.* and resource.* span, and the options frame.
    (
        {"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "navigation.navigate"}}},
        NETWORK,
    ),
    (
        {"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "navigation.push"}}},
        NETWORK,
    ),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "resource.img"}}}, NETWORK),
    (
        {"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "resource.script"}}},
        NETWORK,
    ),
    ({"type": 5, "data": {"tag": "options", "payload": {"networkDetailHasUrls": True}}}, NETWORK),
    # Spans the network tab does not show.
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "memory"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "web-vital"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "resource"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "performanceSpan", "payload": {"op": "paint"}}}, TIMELINE),
    # Sentry's console tab: breadcrumbs of category console only (a custom category is not).
    ({"type": 5, "data": {"tag": "breadcrumb", "payload": {"category": "my.custom"}}}, TIMELINE),
    ({"type": 5, "data": {"tag": "breadcrumb", "payload": {"category": "fetch"}}}, TIMELINE),
    # Sentry reads data.tag whatever the type; what the player draws always stays in dom.
    (
        {"type": 6, "data": {"tag": "breadcrumb", "payload": {"category": "console"}}},
        CONSOLE,
    ),
    (
        {"type": 3, "data": {"tag": "breadcrumb", "payload": {"category": "console"}}},
        DOM,
    ),
    ({"type": 6, "data": {"plugin": "rrweb/console@1", "payload": {"level": "log"}}}, CONSOLE),
    ({"type": 6, "data": {"plugin": "rrweb/network@1", "payload": {}}}, NETWORK),
    ({"type": 6, "data": {"plugin": "rrweb/sequential-id@1"}}, TIMELINE),
    ({"type": 5, "data": "not an object"}, TIMELINE),
    ({"type": 99}, TIMELINE),
]


@pytest.mark.parametrize(
    ("event", "part"), SAMPLES, ids=[f"{p}-{i}" for i, (_, p) in enumerate(SAMPLES)]
)
def test_classification(event: dict[str, Any], part: str) -> None:
    assert classify(event) == part


events_strategy = st.lists(st.sampled_from([event for event, _ in SAMPLES]), max_size=60)


@given(events=events_strategy)
@settings(max_examples=150, deadline=None)
def test_split_then_merge_restores_every_event_in_order(events: list[dict[str, Any]]) -> None:
    stored = split(orjson.dumps(events))
    assert stored  # never zero parts, even for an empty segment
    assert orjson.loads(merge(list(stored.items()))) == events


@given(
    events=events_strategy,
    wanted=st.sets(st.sampled_from([DOM, CONSOLE, NETWORK, TIMELINE]), min_size=1),
)
@settings(max_examples=150, deadline=None)
def test_a_part_filter_keeps_exactly_those_events_in_order(
    events: list[dict[str, Any]], wanted: set[str]
) -> None:
    stored = split(orjson.dumps(events))
    expected = [e for e in events if classify(e) in wanted]
    assert orjson.loads(merge(list(stored.items()), wanted)) == expected
    # A segment stored whole gives the same answer, filtered at read time.
    whole = [(RECORDING, orjson.dumps(events))]
    assert orjson.loads(merge(whole, wanted)) == expected
    assert merge(whole) == orjson.dumps(events)


def test_only_non_empty_parts_are_stored_as_byte_spans() -> None:
    body = orjson.dumps([SAMPLES[0][0], SAMPLES[5][0]])
    stored = split(body)
    assert sorted(stored) == [CONSOLE, DOM]
    header, _, chunk = stored[CONSOLE].partition(b"\n")
    start = body.index(orjson.dumps(SAMPLES[5][0])) - 1  # the comma before it
    assert orjson.loads(header) == {"spans": [[start, 1, len(body) - start - 2]], "size": len(body)}
    assert chunk == body[start:]  # the separator, the event, and the closing bracket


def test_parts_that_do_not_tile_the_segment_are_refused() -> None:
    from vault_store.errors import CorruptData

    stored = split(orjson.dumps([SAMPLES[0][0], SAMPLES[5][0]]))
    with pytest.raises(CorruptData):
        merge([(CONSOLE, stored[CONSOLE])])  # the dom part is missing


def test_envelope_parts_of_earlier_versions_still_merge() -> None:
    old = [
        (DOM, orjson.dumps({"index": [0], "events": [SAMPLES[0][0]]})),
        (CONSOLE, orjson.dumps({"index": [1], "events": [SAMPLES[5][0]]})),
    ]
    assert orjson.loads(merge(old)) == [SAMPLES[0][0], SAMPLES[5][0]]


def test_a_single_part_segment_keeps_its_original_bytes() -> None:
    body = b'[{"type": 3, "data": {"source": 1}},  {"type": 2, "data": {}}]'
    assert split(body) == {DOM: body}
    assert merge([(DOM, body)]) == body
    assert merge([(DOM, body)], {CONSOLE}) == b"[]"
    assert split(b"[]") == {DOM: b"[]"}


def test_a_whole_segment_mixed_with_parts_is_refused() -> None:
    from vault_store.errors import CorruptData

    with pytest.raises(CorruptData):
        merge([(DOM, b"[]"), (CONSOLE, b'{"index": [0], "events": [{}]}')])


def test_part_filters() -> None:
    assert parse_filter(None) is None and parse_filter(" ") is None
    assert parse_filter("console, network") == frozenset({CONSOLE, NETWORK})
    with pytest.raises(InvalidInput, match="unknown part 'video'"):
        parse_filter("console,video", field="--part")
    with pytest.raises(InvalidInput):
        parse_filter("recording")
