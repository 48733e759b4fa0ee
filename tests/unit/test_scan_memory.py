"""Scanning and splitting a segment costs memory in proportion to its bytes, whatever its shape."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from vault_store.core import parts
from vault_store.core.parts import merge, split
from vault_store.core.rrweb import Scan, scan_array

CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'
SIZE = 2 * 1024 * 1024
# Shapes with one small object (or exception) per event: tracemalloc slows every allocation,
# so these are smaller; the factor is per byte all the same.
SMALL = 192 * 1024
# The stated bound (README, "Memory per message"): scan + split peak at most this many times the
# body. Measured (tracemalloc, this test's sizes): at most x6.7 (tiny scalars: two offsets per
# 2-byte event); before this bound held for every shape, nested brackets took x32, tiny scalars
# x28, tiny arrays x19, distinct heads x19.
FACTOR = 16


def _tiny_objects() -> bytes:
    return b"[" + b'{"a":1},' * (SIZE // 16) + CRUMB + b"]"  # 1 MB: tracemalloc is slow per object


def _deep_nesting() -> bytes:
    # Past msgspec's depth limit, so the iterative scanner reads the long string.
    depth = 10_000
    deep = b'{"type":2,"data":{"node":' + b"[" * depth + b"]" * depth + b"}}"
    pad = b'{"type":3,"data":{"p":"' + b"y" * (SIZE - 2 * depth) + b'"}}'
    return b"[" + deep + b"," + pad + b"," + CRUMB + b"]"


def _deep_with_escapes() -> bytes:
    deep = b'{"type":2,"data":{"node":' + b"[" * 10_000 + b"]" * 10_000 + b"}}"
    pad = b'{"type":3,"data":{"p":"' + b"a\\n" * (SIZE // 3) + b'"}}'
    return b"[" + deep + b"," + pad + b"," + CRUMB + b"]"


def _nested_brackets() -> bytes:
    # Nothing but brackets: one level of the deep scanner's stack per byte of input.
    depth = SMALL // 2
    return b"[" + b"[" * depth + b"]" * depth + b"," + CRUMB + b"]"


def _tiny_scalars() -> bytes:
    return b"[" + b"0," * (SMALL // 2) + CRUMB + b"]"


def _tiny_arrays() -> bytes:
    return b"[" + b"[]," * (SMALL // 3) + CRUMB + b"]"


def _distinct_heads() -> bytes:
    # Every head differs, so sharing equal heads does not help.
    heads = b",".join(b'{"type":%d}' % n for n in range(SMALL // 12))
    return b"[" + heads + b"," + CRUMB + b"]"


def _tiny_usual_events() -> bytes:
    # The densest body the one-pass scan decodes whole: an object, a span and an integer each.
    events = b",".join(b'{"type":%d,"data":0}' % (300 + n % 9000) for n in range(SMALL // 22))
    return b"[" + events + b"," + CRUMB + b"]"


def _alternating_parts() -> bytes:
    # A part change at every event: one span entry per event, the most header per byte.
    return b"[" + b'{"type":2},0,' * (SMALL // 13) + CRUMB + b"]"


def _deep_arrays_in_events() -> bytes:
    # Each event nests past msgspec's limit: the whole body goes through the deep scanner.
    event = b'{"type":3,"data":' + b"[" * 1500 + b"]" * 1500 + b"}"
    return b"[" + b",".join([event] * (SMALL // len(event))) + b"," + CRUMB + b"]"


@pytest.mark.parametrize(
    "make",
    [
        _tiny_objects,
        _deep_nesting,
        _deep_with_escapes,
        _nested_brackets,
        _tiny_scalars,
        _tiny_arrays,
        _distinct_heads,
        _tiny_usual_events,
        _alternating_parts,
        _deep_arrays_in_events,
    ],
)
@pytest.mark.parametrize("scan", [scan_array, parts.scan], ids=["spans", "codes"])
def test_scan_and_split_peak_is_within_the_stated_factor(
    make: Callable[[], bytes], scan: Callable[[bytes], Scan]
) -> None:
    body = make()
    tracemalloc.start()
    try:
        stored = split(body, scan(body))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "console" in stored and len(stored) >= 2
    assert merge(list(stored.items())) == body
    assert peak <= FACTOR * len(body), f"peak x{peak / len(body):.1f} over the body"
