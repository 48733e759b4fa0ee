"""The bench's 700-segment read in CPU time: the library's read, the merged-then-joined pages it
made before pages were decompressed in place, and the bare AES-GCM + zstd loop, interleaved.

Run:  VAULT_STORE_RECORDINGS=../shared/data/recordings python benchmarks/decode_cpu.py [--rounds N]
      [--typed]

`--typed` stores the segments as typed parts (the server's default, `VAULT_STORE_PARTS=typed`)
instead of whole, as `vault-store bench` does: segments of mixed events are then several frames,
merged at read time.

`time.process_time` counts every thread of the process, so on a machine whose cores are busy
with other work it is the steadier figure; wall time is printed beside it. The bare loop decodes
the distinct segment bodies once; its times are scaled by bytes to the library's output, as in
`vault-store bench` (`reads.decode`). One JSON line: medians in ms, and bare / each side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from vault_store import Vault
from vault_store.cli.bench import load_suite
from vault_store.settings import Settings

SEGMENTS = 700


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (default 21)")
    parser.add_argument("--typed", action="store_true", help="store segments as typed parts")
    args = parser.parse_args()
    suite = load_suite()
    bench = suite.Bench(quick=False, pg_url=None, recordings=Settings.from_env().recordings)
    try:
        vault = bench.vault()
        if args.typed:
            # The same scratch catalog, store and key file, with parts split at ingest.
            vault = Vault(
                catalog=vault._catalog,
                blob_store=vault._blob_store,
                kms=vault._kms,
                typed_parts=True,
            )
        replay = suite.stored_replay(bench, vault, SEGMENTS)
        output = b"".join(vault.read_recording(1, replay))
        scale = len(output) / sum(len(body) for body in bench.bodies)

        def library() -> None:
            for _chunk in vault.read_recording(1, replay):
                pass

        def merged_then_joined() -> None:
            # What read_recording did before: each page's segments opened and merged, then the
            # page joined with its commas.
            written = 0
            for page in vault._reader.merged(1, replay):
                pieces = []
                for _segment_id, body in page:
                    if written:
                        pieces.append(b",")
                    pieces.append(body)
                    written += 1
                b"".join(pieces)

        sides: dict[str, Callable[[], None]] = {
            "library": library,
            "merged_then_joined": merged_then_joined,
            "bare": suite.bare_decoder(bench.bodies),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _round in range(args.rounds):
            for name, side in sides.items():
                wall, cpu = time.perf_counter(), time.process_time()
                side()
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        medians = {
            name: (
                statistics.median(t[0] for t in taken) * 1e3,
                statistics.median(t[1] for t in taken) * 1e3,
            )
            for name, taken in times.items()
        }
        bare_wall, bare_cpu = (value * scale for value in medians.pop("bare"))
        result: dict[str, object] = {
            name: {
                "wall_ms": round(wall, 1),
                "cpu_ms": round(cpu, 1),
                "wall_ratio_to_bare": round(bare_wall / wall, 3),
                "cpu_ratio_to_bare": round(bare_cpu / cpu, 3),
            }
            for name, (wall, cpu) in medians.items()
        }
        result["bare_scaled"] = {"wall_ms": round(bare_wall, 1), "cpu_ms": round(bare_cpu, 1)}
        result["typed_parts"] = args.typed
        result["load_average"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result), flush=True)
        vault.close()
    finally:
        bench.close()


if __name__ == "__main__":
    main()
