"""Cheaper checks for segments whose events are all drawn, tried inside the library path.

Run:  python benchmarks/parts_drawn_check.py [--rounds N]

Most segments of the real recordings (163 of 169, 81% of the bytes) hold only what the player
draws (types 2, 3 and 4), so their whole body is the `dom` part and needs no spans. Each variant
below answers "all drawn?" first and falls back to the scan of `parts.scan` for any other body
(several parts, invalid JSON, lone surrogates, deep nesting); each must give the same codes:

- ``msgspec_drawn``: one msgspec decode into a list of objects whose type is 2, 3 or 4 (every
  other field skipped), stopping at the first other type;
- ``simdjson_drawn``: pysimdjson's parse (not a dependency: measured only when installed), then
  each element's type read through its Python proxy.

The segments are handed to `Vault.ingest_segment` with parts off, with the scan as it is, and
with each variant, in one process, each twice a round (the order rotating by round, then
reversed), after one untimed round. Reported (CPU time): each one's median, its ratio to parts
off, and the median paired difference against the scan as it is (negative: the variant is
cheaper).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parts_report import recording_segments, vault_in

from vault_store.core import parts, rrweb

Scanner = Callable[..., rrweb.Scan]
DOM = parts.TYPED_PARTS.index(parts.DOM)
CURRENT: Scanner = parts.scan


class _Drawn(msgspec.Struct, gc=False):
    type: Literal[2, 3, 4]


_ALL_DRAWN = msgspec.json.Decoder(list[_Drawn])


def msgspec_drawn(body: bytes, *, field: str = "payload.body") -> rrweb.Scan:
    try:
        count = len(_ALL_DRAWN.decode(body))
    except (msgspec.DecodeError, RecursionError):
        return CURRENT(body, field=field)
    if count > rrweb.MAX_EVENTS:
        return CURRENT(body, field=field)
    return rrweb.Scan(body, field, codes=bytearray((DOM,)) * count)


def simdjson_drawn() -> Scanner | None:
    try:
        simdjson: Any = importlib.import_module("simdjson")
    except ImportError:
        return None
    parser = simdjson.Parser()
    drawn = frozenset({2, 3, 4})

    def scan(body: bytes, *, field: str = "payload.body") -> rrweb.Scan:
        # simdjson refuses lone surrogate escapes, integers past 64 bits, invalid UTF-8 and
        # nesting past 1024 levels: such bodies take the scan as it is.
        try:
            document = parser.parse(body)
        except (ValueError, RuntimeError):
            return CURRENT(body, field=field)
        count = 0
        if isinstance(document, simdjson.Array):
            for event in document:
                kind = event.get("type") if isinstance(event, simdjson.Object) else None
                if type(kind) is not int or kind not in drawn:
                    break
                count += 1
            else:
                del document
                return rrweb.Scan(body, field, codes=bytearray((DOM,)) * count)
        del document
        return CURRENT(body, field=field)

    return scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    recordings, segments = recording_segments()
    variants: dict[str, Scanner | None] = {
        "off": None,
        "current": CURRENT,
        "msgspec_drawn": msgspec_drawn,
    }
    simd = simdjson_drawn()
    if simd is not None:
        variants["simdjson_drawn"] = simd
    for segment in segments:
        expected = CURRENT(segment.body).codes
        for name, scan in variants.items():
            if scan is not None and scan(segment.body).codes != expected:
                raise SystemExit(f"{name} gives other codes than the scan as it is")
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    with tempfile.TemporaryDirectory() as work:
        vaults = {name: vault_in(Path(work) / name, typed=name != "off") for name in names}
        try:
            for round_number in range(args.rounds + 1):
                turn = round_number % len(names)
                order = names[turn:] + names[:turn]
                for name in order + order[::-1]:
                    setattr(parts, "scan", variants[name] or CURRENT)  # noqa: B010
                    fresh = {f"{i:032x}": uuid.uuid4().hex for i in range(len(recordings))}
                    batch = [replace(s, replay_id=fresh[s.replay_id]) for s in segments]
                    vault = vaults[name]
                    started = time.process_time()
                    for segment in batch:
                        vault.ingest_segment(segment)
                    vault.flush()
                    if round_number:  # the first round only warms up
                        cpu[name].append(time.process_time() - started)
        finally:
            setattr(parts, "scan", CURRENT)  # noqa: B010
            for vault in vaults.values():
                vault.close()
    off, current = cpu["off"], cpu["current"]
    results: dict[str, Any] = {"rounds": args.rounds, "segments_per_round": len(segments)}
    for name, seconds in cpu.items():
        results[name] = {
            "cpu_ms": round(statistics.median(seconds) * 1000, 1),
            "over_off": round(statistics.median(seconds) / statistics.median(off), 3),
            "less_current_paired_ms": round(
                statistics.median(a - b for a, b in zip(seconds, current, strict=True)) * 1000,
                1,
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
