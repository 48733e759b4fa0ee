"""Replay shreds on a kept catalog, one after another as a worker runs them: ms each, and where.

Run:  python benchmarks/replay_shreds.py --schema NAME [--offset 0] [--count 40] [--warm-up 5]
          [--statements] [--pg URL] [--json]

NAME is a schema `catalog_scale.py --keep` left. The replays are taken from projects 100 to
1999 in a fixed pseudo-random order (by the md5 of their id), skipping `--offset` of them, so
runs with different offsets shred different replays of the same kind. Each is requested and run
whole (the shred is real: its rows are gone afterwards), after `--warm-up` replays that are not
reported: a worker's pooled connections have every partition's catalog entries loaded, a fresh
process has not. Prints the median and mean ms per replay; with `--statements`, the statements'
time per replay grouped by their first words, slowest first. To compare two versions of the
code, run this file with `PYTHONPATH` set to each checkout in turn, alternating, with a new
`--offset` each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from vault_store import Scope
from vault_store.catalog import Catalog
from vault_store.services.shredder import Shredder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_scale import schema_url
from shred_statements import StatementClock

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="a schema catalog_scale.py --keep left")
    parser.add_argument("--offset", type=int, default=0, help="replays of the order to skip")
    parser.add_argument("--count", type=int, default=40, help="replays shredded and reported")
    parser.add_argument("--warm-up", type=int, default=5, help="replays shredded first, unreported")
    parser.add_argument("--statements", action="store_true", help="time each statement too")
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = Catalog(schema_url(args.pg, args.schema))
    try:
        result = measure(catalog, args.offset, args.count, args.warm_up, args.statements)
    finally:
        catalog.dispose()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['replays']} replays ({result['rows']:,} rows): median {result['median_ms']} ms, "
        f"mean {result['mean_ms']} ms"
    )
    for line in result.get("statements", []):
        print(f"{line['ms'] / result['replays']:8.2f} ms {line['count']:6d}x  {line['statement']}")


def measure(
    catalog: Catalog, offset: int, count: int, warm_up: int, statements: bool
) -> dict[str, Any]:
    """Shred `warm_up` + `count` replays in turn; the reported ones' times (and statements)."""
    with catalog.connection("bench") as conn:
        replays = conn.execute(
            text(
                "SELECT project_id, replay_id FROM replay WHERE project_id BETWEEN 100 AND 1999 "
                "ORDER BY md5(replay_id) OFFSET :offset LIMIT :limit"
            ),
            {"offset": offset, "limit": warm_up + count},
        ).all()
    shredder = Shredder(catalog)
    clock = StatementClock(catalog) if statements else None
    times, rows = [], 0
    for index, (project, replay) in enumerate(replays):
        if index == warm_up and clock is not None:
            clock.reset()
        started = time.perf_counter()
        deletion = shredder.request(
            Scope.REPLAY, int(project), replay_id=str(replay), requested_by="bench", reason="bench"
        )
        status = shredder.run(deletion)
        if index >= warm_up:
            times.append(time.perf_counter() - started)
            rows += status.rows_deleted
    result: dict[str, Any] = {
        "replays": len(times),
        "rows": rows,
        "median_ms": round(statistics.median(times) * 1e3, 2) if times else None,
        "mean_ms": round(statistics.mean(times) * 1e3, 2) if times else None,
    }
    if clock is not None:
        result["statements"] = clock.slowest()
    return result


if __name__ == "__main__":
    main()
