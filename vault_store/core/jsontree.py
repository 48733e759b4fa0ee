"""Parsing rrweb JSON into Python objects without paying for the cyclic garbage collector."""

from __future__ import annotations

import gc
from typing import Any

import orjson


def parse(data: bytes) -> Any:
    """orjson.loads with the cyclic collector paused.

    A DOM snapshot becomes millions of containers; each allocation wave would trigger a
    collection over the whole heap, and parsed JSON has no cycles to find (reference counting
    frees it). Measured on the real recordings: typed-parts ingest 3.1x -> 1.9x of parts off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(data)
    finally:
        if was_enabled:
            gc.enable()
