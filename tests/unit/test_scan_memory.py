"""Scanning and splitting a segment costs memory in proportion to its bytes, whatever its shape."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from vault_store.core.parts import merge, split
from vault_store.core.rrweb import scan_array

CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'
SIZE = 2 * 1024 * 1024
# The stated bound (README, "Memory per message"): scan + split peak at most this many times the
# body. Measured: x9 for many tiny objects, x2 for deep nesting; before the compact scan the
# same shapes took x89 and x167.
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


@pytest.mark.parametrize("make", [_tiny_objects, _deep_nesting, _deep_with_escapes])
def test_scan_and_split_peak_is_within_the_stated_factor(make: Callable[[], bytes]) -> None:
    body = make()
    tracemalloc.start()
    try:
        stored = split(body, scan_array(body))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(stored) == {"dom", "console"} or set(stored) == {"timeline", "console"}
    assert merge(list(stored.items())) == body
    assert peak <= FACTOR * len(body), f"peak x{peak / len(body):.1f} over the body"
