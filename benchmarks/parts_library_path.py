"""Typed parts on the library path alone: typed / off, many A B B A rounds in one process.

Run:  python benchmarks/parts_library_path.py [--rounds N]

The segments of the real recordings (../shared/data/recordings) are handed to
`Vault.ingest_segment` with typed parts and with parts off, each setting twice a round in the
order A B B A (A alternating by round), after one untimed round. Reported for CPU time and wall
clock: each setting's median, their ratio, and the median of the paired differences (typed less
off, run by run): steadier than `parts_report.py`, which also reads views and the message path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parts_report import recording_segments, vault_in

MODES = ("typed", "off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    recordings, segments = recording_segments()
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
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
                started_wall, started_cpu = time.perf_counter(), time.process_time()
                for segment in batch:
                    vault.ingest_segment(segment)
                vault.flush()
                if round_number:  # the first round only warms up
                    cpu[mode].append(time.process_time() - started_cpu)
                    wall[mode].append(time.perf_counter() - started_wall)
        for vault in vaults.values():
            vault.close()
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
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
