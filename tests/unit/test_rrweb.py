"""Splitting plain rrweb recordings into SDK-like segments."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_store.core.rrweb import Event, load_events, segment_bodies, split_events
from vault_store.errors import InvalidInput
from vault_store.services.samples import Recording


def test_real_recordings_split_into_sdk_sized_segments(recordings: list[Recording]) -> None:
    for recording in recordings:
        segments = list(split_events(recording.events))
        assert [e for segment in segments for e in segment] == recording.events, recording.name
        for segment in segments:
            stamps = [e["timestamp"] for e in segment if "timestamp" in e]
            starts_with_page = segment[0]["type"] in (2, 4)
            # Within one segment: less than the 5 s window, unless it is one event alone.
            assert stamps[-1] - stamps[0] < 5000 or len(segment) == 1 or starts_with_page


def test_idle_gap_makes_no_empty_segment() -> None:
    events: list[Event] = [
        {"type": 3, "timestamp": 0},
        {"type": 3, "timestamp": 1000},
        {"type": 3, "timestamp": 600_000},  # ten idle minutes
        {"type": 3, "timestamp": 601_000},
    ]
    assert [len(s) for s in split_events(events)] == [2, 2]


def test_page_load_starts_a_segment_with_meta_and_snapshot_together() -> None:
    events: list[Event] = [
        {"type": 3, "timestamp": 0},
        {"type": 4, "timestamp": 100},
        {"type": 2, "timestamp": 101},
        {"type": 3, "timestamp": 200},
        {"type": 2, "timestamp": 300},
    ]
    assert [[e["type"] for e in s] for s in split_events(events)] == [[3], [4, 2, 3], [2]]


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=200),
    types=st.lists(st.sampled_from([2, 3, 3, 3, 4, 5]), min_size=200, max_size=200),
)
@settings(max_examples=80, deadline=None)
def test_split_keeps_every_event_in_order(gaps: list[int], types: list[int]) -> None:
    clock = 0
    events: list[Event] = []
    for gap, kind in zip(gaps, types, strict=False):
        clock += gap
        events.append({"type": kind, "timestamp": clock})
    segments = list(split_events(events))
    assert all(segments)
    assert [e for s in segments for e in s] == events


def test_bodies_are_json_arrays_of_the_events() -> None:
    events: list[Event] = [{"type": 4, "timestamp": 1, "data": {"href": "x"}}]
    assert [orjson.loads(b) for b in segment_bodies(events)] == [events]


def test_load_accepts_array_and_result_wrapper() -> None:
    events = [{"type": 3, "timestamp": 1}]
    assert load_events(orjson.dumps(events)) == events
    assert load_events(orjson.dumps({"result": events})) == events


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"not json", "rec"),
        (b'{"events": []}', "rec"),
        (b"[1, 2]", "rec[0]"),
        (b'[{"type": 3}, {"no_type": 1}]', "rec[1]"),
    ],
)
def test_load_refuses_what_is_not_a_recording(data: bytes, where: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_events(data, source="rec")
    assert caught.value.field == where
