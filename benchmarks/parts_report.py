"""Typed parts on the real recordings: what each view fetches, rows per segment, ingest cost.

Run:  python benchmarks/parts_report.py [--rounds N] [--cpu] [--json]

Every session recording in ../shared/data/recordings becomes one replay. It is ingested with
typed parts and with parts off, twice each a round in the order A B B A, A alternating by round
(median of the runs reported). Then each view
(dom, console, network, timeline, and the whole recording) is read from the typed store, and
the sealed bytes and ranged GETs it fetched are counted by the reader. `--cpu` times the
process's CPU (every thread) instead of the wall clock, which other load on the machine blurs.
`split_ms_best` is what typed parts add on the library path, per round, best of the rounds: the
floor any validation costs (msgspec checking each body, no object per event), the scan that
validates and finds each event's part, and the split with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from vault_store import Catalog, LocalBlobStore, LocalKms, Segment, Vault
from vault_store.core import parts
from vault_store.core.message import build_message
from vault_store.core.parts import CONSOLE, DOM, NETWORK, TIMELINE
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import Recording, find_recordings_dir, load_recordings

# Segments handed to the library, and relay messages (zlib bodies) as ingest workers see them.
PATHS = ("segments", "messages")
VIEWS: dict[str, frozenset[str] | None] = {
    "whole recording": None,
    "dom (player)": frozenset({DOM}),
    "console tab": frozenset({CONSOLE}),
    "network tab": frozenset({NETWORK}),
    "timeline": frozenset({TIMELINE}),
}


def vault_in(root: Path, *, typed: bool) -> Vault:
    catalog = Catalog(f"sqlite:///{root / f'{uuid.uuid4().hex}.sqlite3'}")
    catalog.migrate()
    return Vault(
        catalog=catalog,
        blob_store=LocalBlobStore(root / "blobs"),
        kms=LocalKms(root / "kek.json"),
        typed_parts=typed,
    )


def recording_segments() -> tuple[list[Recording], list[Segment]]:
    """The real recordings, and their segments as the browser SDK cuts them, one replay each."""
    directory = find_recordings_dir()
    if directory is None:
        raise SystemExit("the real recordings (shared/data/recordings) were not found")
    recordings = load_recordings(directory)
    segments = [
        Segment(project_id=1, replay_id=f"{index:032x}", segment_id=n, body=body, retention_days=90)
        for index, recording in enumerate(recordings)
        for n, body in enumerate(segment_bodies(recording.events))
    ]
    return recordings, segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    recordings, segments = recording_segments()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        vaults = {"typed": vault_in(root, typed=True), "off": vault_in(root, typed=False)}
        seconds: dict[str, list[float]] = {f"{m} {path}": [] for m in vaults for path in PATHS}
        for round_number in range(args.rounds):
            for path in PATHS:
                # Each setting runs twice a round, A B B A, A alternating by round: over two
                # rounds each takes every place once (with one run a round and an odd number of
                # rounds, one setting went first more often, and going first cost the typed
                # library path more), and the medians have twice the runs.
                order = list(vaults.items())
                first = order if round_number % 2 == 0 else order[::-1]
                for mode, vault in first + first[::-1]:
                    fresh = {f"{i:032x}": uuid.uuid4().hex for i in range(len(recordings))}
                    batch = [replace(s, replay_id=fresh[s.replay_id]) for s in segments]
                    messages = [
                        build_message(
                            project_id=1,
                            replay_id=s.replay_id,
                            segment_id=s.segment_id,
                            body=s.body,
                        )
                        for s in batch
                    ]
                    started = clock()
                    if path == "messages":
                        for raw in messages:
                            vault.ingest_message(raw)
                    else:
                        for segment in batch:
                            vault.ingest_segment(segment)
                    vault.flush()
                    seconds[f"{mode} {path}"].append(clock() - started)
                    if round_number == 0 and path == "segments":
                        vault.__dict__.setdefault("replays", list(fresh.values()))
        bodies = [s.body for s in segments]
        validate_only = msgspec.json.Decoder(msgspec.Raw)
        steps: dict[str, Callable[[], object]] = {
            "validate_only": lambda: [validate_only.decode(body) for body in bodies],
            "scan": lambda: [parts.scan(body) for body in bodies],
            "split": lambda: [parts.split(body) for body in bodies],
        }
        step_seconds: dict[str, list[float]] = {name: [] for name in steps}
        for _round in range(args.rounds):
            for name, step in steps.items():
                started = clock()
                step()
                step_seconds[name].append(clock() - started)
        typed = vaults["typed"]
        stats = typed.stats()
        views: dict[str, dict[str, Any]] = {}
        for name, only in VIEWS.items():
            reader = vault_in(root, typed=True)
            reader._catalog = typed._catalog
            reader._reader._catalog = typed._catalog
            started = time.perf_counter()
            for replay in typed.__dict__["replays"]:
                b"".join(reader.read_recording(1, replay, only=only))
            views[name] = {
                "bytes_fetched": reader.read_counters().bytes_fetched,
                "gets": reader.read_counters().gets,
                "read_seconds": round(time.perf_counter() - started, 4),
            }
            reader._reader.close()
        whole = views["whole recording"]["bytes_fetched"]
        for view in views.values():
            view["share_of_whole"] = round(view["bytes_fetched"] / whole, 5)
        off_stats = vaults["off"].stats()
        results = {
            "recordings": [r.name for r in recordings],
            "segments_per_round": len(segments),
            "ingest_seconds_median": {
                m: round(statistics.median(s), 4) for m, s in seconds.items()
            },
            "ingest_cost_of_splitting": {
                path: round(
                    statistics.median(seconds[f"typed {path}"])
                    / statistics.median(seconds[f"off {path}"]),
                    3,
                )
                for path in PATHS
            },
            "split_ms_best": {
                name: round(min(values) * 1000, 2) for name, values in step_seconds.items()
            },
            "clock": "cpu" if args.cpu else "wall",
            "rows_per_segment": {
                "typed": round(stats.rows / stats.segments, 3),
                "off": round(off_stats.rows / off_stats.segments, 3),
            },
            "stored_bytes": {"typed": stats.bytes_stored, "off": off_stats.bytes_stored},
            "views_first_round_replays": views,
        }
        for vault in vaults.values():
            vault.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
