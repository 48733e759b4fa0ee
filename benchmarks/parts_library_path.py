"""Typed parts on the library path alone: typed / off, many A B B A rounds in one process.

Run:  python benchmarks/parts_library_path.py [--rounds N] [--floor]

The segments of the real recordings (../shared/data/recordings) are handed to
`Vault.ingest_segment` with typed parts and with parts off, each setting twice a round in the
order A B B A (A alternating by round), after one untimed round. Reported for CPU time and wall
clock: each setting's median, their ratio, and the median of the paired differences (typed less
off, run by run): steadier than `parts_report.py`, which also reads views and the message path.

With --floor, each round also times, over the same bodies, what typed parts cannot do without:
validating every body (msgspec, the cheapest full check among the dependencies; and simdjson's
parse, the fastest there is, when pysimdjson is installed: it is not a dependency), the decode
that reads each event's type, and the split with its scan; and reports the ratio typed parts
would have if each were all they added: (off + it) / off, round by round. It also times the
split inside the typed runs (where each body is read cold, between other work) and what typed
parts cost besides it (the frames and rows of the segments of several parts).
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
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parts_report import recording_segments, vault_in

from vault_store.core import parts, rrweb

MODES = ("typed", "off")


def floor_parts() -> dict[str, Callable[[bytes], object]]:
    """What a typed segment's ingest must do beyond a whole one's, from the least up."""
    validate = msgspec.json.Decoder(msgspec.Raw)
    measured: dict[str, Callable[[bytes], object]] = {
        "validate_msgspec": validate.decode,
        "types_msgspec": rrweb._EVENT_TOPS.decode,
        "split": parts.split,
    }
    try:
        simdjson: Any = importlib.import_module("simdjson")
    except ImportError:
        return measured
    parser = simdjson.Parser()

    def parse(body: bytes) -> object:
        # Only the parse: the parser keeps its buffers, the document goes at once.
        return len(parser.parse(body))

    def types(body: bytes) -> object:
        return [event["type"] for event in parser.parse(body)]

    measured["validate_simdjson"] = parse
    measured["types_simdjson"] = types
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--floor", action="store_true")
    args = parser.parse_args()
    recordings, segments = recording_segments()
    bodies = [segment.body for segment in segments]
    extra = floor_parts() if args.floor else {}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    pieces: dict[str, list[float]] = {name: [] for name in extra}
    in_path = [0.0]
    split = parts.split

    def timed_split(body: bytes, scanned: rrweb.Scan | None = None) -> dict[str, bytes]:
        started = time.process_time()
        try:
            return split(body, scanned)
        finally:
            in_path[0] += time.process_time() - started

    split_in_path: list[float] = []
    if args.floor:
        setattr(parts, "split", timed_split)  # noqa: B010 (mypy refuses assigning to a function)
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        vaults = {mode: vault_in(root, typed=mode == "typed") for mode in MODES}
        for round_number in range(args.rounds + 1):
            first = list(MODES) if round_number % 2 == 0 else list(MODES[::-1])
            for mode in first + first[::-1]:
                fresh = {f"{i:032x}": uuid.uuid4().hex for i in range(len(recordings))}
                batch = [replace(s, replay_id=fresh[s.replay_id]) for s in segments]
                vault = vaults[mode]
                in_path[0] = 0.0
                started_wall, started_cpu = time.perf_counter(), time.process_time()
                for segment in batch:
                    vault.ingest_segment(segment)
                vault.flush()
                if round_number:  # the first round only warms up
                    cpu[mode].append(time.process_time() - started_cpu)
                    wall[mode].append(time.perf_counter() - started_wall)
                    if mode == "typed" and args.floor:
                        split_in_path.append(in_path[0])
            for name, step in extra.items():
                started_cpu = time.process_time()
                for body in bodies:
                    step(body)
                if round_number:
                    pieces[name].append(time.process_time() - started_cpu)
        for vault in vaults.values():
            vault.close()
    setattr(parts, "split", split)  # noqa: B010
    results = {
        "segments_per_round": len(segments),
        "bytes_per_round": sum(len(s.body) for s in segments),
        "rounds": args.rounds,
    }
    for clock, seconds in (("cpu", cpu), ("wall", wall)):
        typed, off = seconds["typed"], seconds["off"]
        results[clock] = {
            "typed_ms": round(statistics.median(typed) * 1000, 1),
            "off_ms": round(statistics.median(off) * 1000, 1),
            "typed_over_off": round(statistics.median(typed) / statistics.median(off), 3),
            "paired_difference_ms": round(
                statistics.median(a - b for a, b in zip(typed, off, strict=True)) * 1000, 1
            ),
        }
    if extra:
        # Each round ran parts off twice: their mean is that round's whole-segment cost.
        off = [(a + b) / 2 for a, b in zip(cpu["off"][::2], cpu["off"][1::2], strict=True)]
        results["floor_cpu"] = {
            name: {
                "ms": round(statistics.median(seconds) * 1000, 2),
                "off_plus_it_over_off": round(
                    statistics.median((o + s) / o for o, s in zip(off, seconds, strict=True)), 3
                ),
            }
            for name, seconds in pieces.items()
        }
        typed_runs = cpu["typed"]
        results["floor_cpu"]["split_in_typed_path"] = {
            "ms": round(statistics.median(split_in_path) * 1000, 2),
            "typed_less_off_less_it_ms": round(
                statistics.median(
                    t - s - o for t, s, o in zip(typed_runs, split_in_path, cpu["off"], strict=True)
                )
                * 1000,
                2,
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
