"""The segment scanner: any valid JSON array at any depth, byte spans, shallow heads, no recursion."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_store.core import parts, rrweb
from vault_store.core.parts import TYPED_PARTS, classify, classify_head, merge, split
from vault_store.core.rrweb import scan_array
from vault_store.errors import InvalidInput

CONSOLE_CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'


def _deep(levels: int) -> bytes:
    return b'{"type":2,"data":{"node":' + b"[" * levels + b"]" * levels + b"}}"


@pytest.mark.parametrize("levels", [120, 1_000, 10_000])
def test_deep_dom_with_a_console_breadcrumb_splits_and_merges_exactly(levels: int) -> None:
    body = b"[" + _deep(levels) + b"," + CONSOLE_CRUMB + b"]"
    stored = split(body)
    assert set(stored) == {"dom", "console"}
    assert merge(list(stored.items())) == body
    assert merge(list(stored.items()), {"console"}) == b"[" + CONSOLE_CRUMB + b"]"
    assert merge(list(stored.items()), {"dom"}) == b"[" + _deep(levels) + b"]"


def test_lone_surrogates_are_accepted_and_kept_as_sent() -> None:
    body = rb'[{"type":3,"data":{"text":"cut \ud83c"}},' + CONSOLE_CRUMB + rb',"\udc00 alone"]'
    stored = split(body)
    assert merge(list(stored.items())) == body
    assert b"\\ud83c" in merge(list(stored.items()), {"dom"})


def test_numbers_are_kept_byte_for_byte() -> None:
    body = b'[ {"type":3,"data":{"x":1.50,"y":123456789012345678901234567890}} ,\n' + (
        CONSOLE_CRUMB + b", 1e5000 ]\n"
    )
    stored = split(body)
    assert len(stored) == 3  # dom, console, timeline
    assert merge(list(stored.items())) == body


@pytest.mark.parametrize(
    "bad",
    [b"[1,]", b'[{"a":}]', b"{}", b"[1] x", b"[", b"", b'["\x01"]', b"[01]", b"[NaN]", b'["\\x"]'],
)
def test_invalid_json_is_refused_by_both_scanners(bad: bytes) -> None:
    with pytest.raises(InvalidInput) as fast:
        scan_array(bad)
    assert fast.value.field == "payload.body"
    with pytest.raises(InvalidInput):
        rrweb._scan_iteratively(bad, "payload.body")


def test_errors_name_a_position_never_content() -> None:
    with pytest.raises(InvalidInput) as caught:
        scan_array(b'[{"secret-value": }]')
    assert "secret" not in str(caught.value)


# -- properties ------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["rrweb/console@1", "rrweb/network@1", "breadcrumb", "console"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "data", "payload", "tag", "x"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)
_event = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"type": st.sampled_from([2, 3, 4, 5, 6, 2.0, True, "5"]), "data": _json}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from([5, 6]),
            "data": st.fixed_dictionaries(
                {
                    "plugin": st.sampled_from(["rrweb/console@1", "rrweb/network@1", "x"]),
                    "tag": st.sampled_from(["breadcrumb", "performanceSpan"]),
                    "payload": st.fixed_dictionaries(
                        {
                            "category": st.sampled_from(["console", "ui.click"]),
                            "op": st.sampled_from(["resource.fetch", "resource.xhr", "nav"]),
                        }
                    ),
                }
            ),
        }
    ),
)
_spaces = st.sampled_from(["", " ", "\n", " \t\r\n "])


def _render(events: list[Any], pads: list[str]) -> bytes:
    # json.dumps, not orjson: it writes integers above 2^64 and keeps key order as given.
    pieces = [json.dumps(event, ensure_ascii=False, separators=(",", ":")) for event in events]
    pad = iter(pads * (len(pieces) * 2 + 4))
    inner = ",".join(f"{next(pad)}{piece}{next(pad)}" for piece in pieces)
    return f"{next(pad)}[{inner}{next(pad) if not pieces else ''}]{next(pad)}".encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=12), st.lists(_spaces, min_size=1, max_size=4))
def test_split_then_merge_is_the_identity_on_bytes(events: list[Any], pads: list[str]) -> None:
    body = _render(events, pads)
    stored = split(body)
    assert merge(list(stored.items())) == body
    heads = scan_array(body).heads
    # The scanner's shallow reading classifies as the full parse would.
    assert [classify_head(h) for h in heads] == [classify(e) for e in orjson.loads(body)]
    for part in TYPED_PARTS:
        wanted = [e for e in orjson.loads(body) if classify(e) == part]
        assert orjson.loads(merge(list(stored.items()), {part})) == wanted


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=12), st.lists(_spaces, min_size=1, max_size=4))
def test_both_scanners_agree(events: list[Any], pads: list[str]) -> None:
    body = _render(events, pads)
    assert rrweb._scan_iteratively(body, "payload.body") == scan_array(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(alphabet='[]{},:"\\0123456789.eE+-tfnrulas ', max_size=40))
def test_fuzzed_bytes_either_scan_or_are_refused(data: bytes | str) -> None:
    body = data.encode() if isinstance(data, str) else data
    try:
        fast = scan_array(body)
    except InvalidInput:
        fast = None
    try:
        slow = rrweb._scan_iteratively(body, "payload.body")
    except InvalidInput:
        slow = None
    assert fast == slow
    if fast is not None:
        assert merge(list(split(body, fast).items())) == body


@settings(max_examples=300, deadline=None)
@given(_event)
def test_the_one_pass_head_reads_as_the_stepwise_one(event: Any) -> None:
    raw = json.dumps(event, ensure_ascii=False).encode()
    assert rrweb._head_of(raw) == rrweb._head_stepwise(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":5,"data":1,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}',
        b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}},"data":1}',
        b'{"type":5,"data":{"tag":"x"},"data":{"tag":"breadcrumb"}}',
        b'{"type":5,"data":{"payload":[],"payload":{"op":"resource.fetch"}}}',
        b'{"type":5,"data":{"payload":{"op":"resource.fetch"},"payload":null}}',
        b'{"data":null}',
        b"[]",
        b"5",
    ],
)
def test_the_one_pass_head_reads_repeated_and_odd_fields_as_the_stepwise_one(raw: bytes) -> None:
    assert rrweb._head_of(raw) == rrweb._head_stepwise(raw)


# Events of the usual shape (an object, an integer type), long enough to be read in one pass.
_usual_event = st.fixed_dictionaries(
    {"type": st.integers(min_value=0, max_value=7), "data": _json},
    optional={"pad": st.just("x" * 64), "type ": st.just(1)},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_usual_event | _event, max_size=12), st.lists(_spaces, min_size=1, max_size=4))
def test_the_parts_found_while_scanning_are_those_of_the_parsed_events(
    events: list[Any], pads: list[str]
) -> None:
    body = _render(events, pads)
    scanned = parts.scan(body)
    assert scanned.codes is not None
    parsed = json.loads(body)
    assert [TYPED_PARTS[code] for code in scanned.codes] == [classify(e) for e in parsed]
    # Spans found afterwards (only a segment of several parts needs them) are the scan's.
    assert scanned == scan_array(body)


@pytest.mark.parametrize(
    ("event", "part"),
    [
        (
            b'{"type":3,"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}',
            "console",
        ),
        (
            b'{"type":5,"type":3,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}',
            "dom",
        ),
        (b'{"type":2.0,"data":{"tag":"options"}}', "dom"),
        (b'{"type":"3","data":{"tag":"options"}}', "network"),
        (b'{"type":5,"data":{"tag":"options"},"data":null}', "timeline"),
        (b'{"type":5,"data":{"tag":"x\\ud83c"},"x":"\\udc00"}', "timeline"),
        (b'{"type":6,"data":{"plugin":"rrweb/console@1"}}', "console"),
    ],
)
def test_repeated_and_odd_fields_get_the_part_of_the_parsed_event(event: bytes, part: str) -> None:
    body = b"[" + event + b"," + CONSOLE_CRUMB + b',{"type":3,"p":"' + b"p" * 200 + b'"}]'
    assert json.loads(event) and classify(json.loads(event)) == part
    scanned = parts.scan(body)
    assert scanned.codes is not None and TYPED_PARTS[scanned.codes[0]] == part
    stored = split(body, scanned)
    assert merge(list(stored.items())) == body


# -- spans of large events from their decoded fields -----------------------------------------

_BIG_DOM = b'{"type":2,"data":{"node":"' + b"d" * 2048 + b'"},"timestamp":1}'
_CRUMB_SDK = (
    b'{"type":5,"timestamp":1.5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'
)
_DATA_FIRST = b'{"data":{"source":0,"x":"' + b"m" * 2048 + b'"},"type":3,"timestamp":2}'
_NO_TIMESTAMP = b'{"type":3,"data":{"p":"' + b"q" * 2048 + b'"}}'


def _no_second_pass(body: bytes, field: str, *, bulk: bool = False) -> Any:
    raise AssertionError("the body was decoded a second time for its spans")


@pytest.mark.parametrize(
    "events",
    [
        [_BIG_DOM, _CRUMB_SDK, _DATA_FIRST],
        [_CRUMB_SDK, _BIG_DOM],
        [_NO_TIMESTAMP, b'{"type":null,"data":{"tag":"options"}}', _BIG_DOM],
        [_DATA_FIRST, b'{"type":6,"data":{"plugin":"rrweb/network@1"},"timestamp":3}'],
    ],
)
@pytest.mark.parametrize("separator", [b",", b" ,\n "])
def test_a_segment_of_large_events_in_several_parts_is_decoded_once(
    events: list[bytes], separator: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b" [ " + separator.join(events) + b" ]\n"
    expected = scan_array(body)
    monkeypatch.setattr(rrweb, "_find_spans", _no_second_pass)
    scanned = parts.scan(body)
    assert scanned.codes is not None and len(set(scanned.codes)) > 1
    assert (scanned.starts, scanned.stops) == (expected.starts, expected.stops)
    assert merge(list(split(body, scanned).items())) == body


@pytest.mark.parametrize(
    "odd",
    [
        # Written otherwise than as its decoded fields: the second pass finds the spans.
        b'{"type":3,"data":{"a":1},"timestamp":1,"type":5}',
        b'{"type":3,"data":1,"data":{"tag":"options"},"timestamp":1}',
        b'{"type":3, "data":{"tag":"options"},"timestamp":1}',
        b'{"type":3,"timestamp":1,"data":{"tag":"options"},"sessionId":"s"}',
        b'{"type":3,"data":{"tag":"options"},"timestamp":1,"sessionId":"s"}',
        b'{"type":3,"data":{"tag":"options"},"timestamp":"1"}',
        b'{"\\u0074ype":5,"type":5,"data":{"tag":"options"}}',
        b'{"type":5,"data":{"tag":"options"},"timestamp":1e0}',
    ],
)
def test_events_not_written_as_their_fields_get_their_spans_from_a_second_pass(
    odd: bytes,
) -> None:
    body = b"[" + _BIG_DOM + b"," + odd + b"," + _CRUMB_SDK + b"," + _BIG_DOM + b"]"
    scanned = parts.scan(body)
    expected = scan_array(body)
    assert (scanned.starts, scanned.stops) == (expected.starts, expected.stops)
    assert scanned.codes is not None
    assert [TYPED_PARTS[code] for code in scanned.codes] == [classify(e) for e in json.loads(body)]
    assert merge(list(split(body, scanned).items())) == body


@settings(max_examples=300, deadline=None)
@given(st.lists(_usual_event | _event, max_size=12), st.lists(_spaces, min_size=1, max_size=4))
def test_spans_found_from_the_fields_are_those_of_the_second_pass(
    events: list[Any], pads: list[str]
) -> None:
    body = _render(events, pads)
    # Every segment of several parts takes the path of large events, whatever its sizes.
    with patch.object(rrweb, "_LARGE_EVENT", 0):
        scanned = parts.scan(body)
    expected = scan_array(body)
    assert (scanned.starts, scanned.stops) == (expected.starts, expected.stops)
    assert merge(list(split(body, scanned).items())) == body


# -- segments whose events are all drawn -------------------------------------------------------


class _CountingTypes(dict[int, int]):
    """A `by_type` that counts the per-event look-ups the scan makes."""

    lookups = 0

    def get(self, key: Any, default: Any = None) -> Any:
        type(self).lookups += 1
        return super().get(key, default)


def test_a_segment_of_drawn_events_looks_up_no_code_per_event() -> None:
    by_type = _CountingTypes(parts.CLASSIFIER.by_type)
    classifier = rrweb.Classifier(by_type=by_type, of_head=parts.CLASSIFIER.of_head)
    body = b"[" + b",".join([_BIG_DOM, _NO_TIMESTAMP, b'{"type":4,"data":{}}'] * 50) + b"]"
    _CountingTypes.lookups = 0
    scanned = scan_array(body, classifier=classifier)
    assert scanned.codes == bytearray(150)
    assert _CountingTypes.lookups == 0
    # One event of another type: every event's code comes from its type, as before.
    scanned = scan_array(body[:-1] + b"," + CONSOLE_CRUMB + b"]", classifier=classifier)
    assert scanned.codes == bytearray(150) + bytes([parts.TYPED_PARTS.index("console")])
    assert _CountingTypes.lookups == 151


def test_types_of_several_codes_share_none() -> None:
    assert parts.CLASSIFIER.shared == (TYPED_PARTS.index("dom"), frozenset({2, 3, 4}))
    classifier = rrweb.Classifier(by_type={2: 0, 6: 1}, of_head=lambda head: 3)
    assert classifier.shared is None
    body = b'[{"type":2,"data":0},{"type":6,"data":0},{"type":5,"data":0},{"type":2,"data":1}]'
    assert scan_array(body, classifier=classifier).codes == bytearray([0, 1, 3, 0])


_drawn_event = st.fixed_dictionaries(
    {"type": st.sampled_from([2, 3, 4]), "data": _json},
    optional={"timestamp": st.integers(min_value=0), "type ": st.just(5)},
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_drawn_event, max_size=12),
    st.lists(_event, max_size=1),
    st.lists(_spaces, min_size=1, max_size=4),
)
def test_drawn_segments_get_the_parts_of_the_parsed_events(
    drawn: list[Any], other: list[Any], pads: list[str]
) -> None:
    body = _render(drawn + other, pads)
    scanned = parts.scan(body)
    assert scanned.codes is not None
    assert [TYPED_PARTS[code] for code in scanned.codes] == [classify(e) for e in json.loads(body)]
    assert scanned == scan_array(body)
    assert merge(list(split(body, scanned).items())) == body
