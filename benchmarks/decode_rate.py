"""The decode section of `vault-store bench` alone: `suite.decode_rate` on its 700-segment replay.

Run:  VAULT_STORE_RECORDINGS=../shared/data/recordings python benchmarks/decode_rate.py [--runs N]

Each run prints one JSON line with the keys of `reads.decode` in `vault-store bench --json`
(medians of 7 interleaved rounds, library then bare), so two versions can be compared by running
this script alternately from each checkout in seconds instead of the whole suite's minutes.
"""

from __future__ import annotations

import argparse
import json
import os

from vault_store.cli.bench import load_suite
from vault_store.settings import Settings

SEGMENTS = 700


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="decode_rate measurements (default 3)")
    args = parser.parse_args()
    suite = load_suite()
    bench = suite.Bench(quick=False, pg_url=None, recordings=Settings.from_env().recordings)
    try:
        vault = bench.vault()
        replay = suite.stored_replay(bench, vault, SEGMENTS)
        for _run in range(args.runs):
            result = suite.decode_rate(bench, vault, replay)
            result["load_average"] = round(os.getloadavg()[0], 2)
            print(json.dumps(result), flush=True)
        vault.close()
    finally:
        bench.close()


if __name__ == "__main__":
    main()
