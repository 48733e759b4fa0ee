"""Project shreds on a kept catalog, each statement timed: where a shred's time goes.

Run:  python benchmarks/shred_statements.py --schema NAME --projects 21,22 [--warm-up 50,60]
          [--pg URL] [--json]

NAME is a schema `catalog_scale.py --keep` left. Each project of `--projects` is shredded
whole (the shred is real: its rows are gone afterwards), after the `--warm-up` projects, which
are shredded first in the same process and not reported: a worker's pooled connections have
the catalog entries of every partition loaded and its statements compiled, and a fresh process
has neither. Prints each shred's rows/s and client CPU, then the statements of the reported
shreds grouped by their first words, slowest first. To compare two versions of the code, run
this file with `PYTHONPATH` set to each checkout in turn, on projects of similar size.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import event

from vault_store.catalog import Catalog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_scale import schema_url, timed_project_shred

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True, help="a schema catalog_scale.py --keep left")
    parser.add_argument("--projects", required=True, help="project ids to shred and report")
    parser.add_argument("--warm-up", default="", help="project ids to shred first, unreported")
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = Catalog(schema_url(args.pg, args.schema))
    statements = StatementClock(catalog)
    try:
        for project in _ids(args.warm_up):
            _shred(catalog, project)
        statements.reset()
        shreds = [_shred(catalog, project) for project in _ids(args.projects)]
    finally:
        catalog.dispose()
    rows = sum(s["rows"] for s in shreds)
    seconds = sum(s["seconds"] for s in shreds)
    result: dict[str, Any] = {
        "shreds": shreds,
        "rows_per_s": round(rows / seconds) if seconds else None,
        "statements": statements.slowest(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for shred in shreds:
        print(
            f"project {shred['project']}: {shred['rows']:,} rows in {shred['seconds']} s, "
            f"{shred['rows_per_s']:,} rows/s, client CPU {shred['client_cpu_s']} s"
        )
    print(f"all: {result['rows_per_s']:,} rows/s")
    for line in result["statements"]:
        print(f"{line['ms']:10.1f} ms {line['count']:6d}x  {line['statement']}")


def _ids(listed: str) -> list[int]:
    return [int(project) for project in listed.split(",") if project.strip()]


def _shred(catalog: Catalog, project: int) -> dict[str, Any]:
    """Request and run a project shred; its rows, wall time and this process's CPU time."""
    cpu = time.process_time()
    rows, seconds = timed_project_shred(catalog, project, reason="statements")
    return {
        "project": project,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "client_cpu_s": round(time.process_time() - cpu, 3),
    }


class StatementClock:
    """Wall time of each statement the catalog's engine runs, grouped by its first words (a
    partition's name replaced by PART, so one group per kind of statement)."""

    def __init__(self, catalog: Catalog) -> None:
        self._totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self._started: dict[int, float] = {}
        event.listen(catalog.engine, "before_cursor_execute", self._before)
        event.listen(catalog.engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self._totals.clear()

    def slowest(self, count: int = 20) -> list[dict[str, Any]]:
        ranked = sorted(self._totals.items(), key=lambda item: -item[1][1])[:count]
        return [
            {"statement": name, "count": int(n), "ms": round(seconds * 1000, 1)}
            for name, (n, seconds) in ranked
        ]

    def _before(self, conn: Any, *_args: Any) -> None:
        self._started[id(conn)] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        elapsed = time.perf_counter() - self._started.pop(id(conn), time.perf_counter())
        name = re.sub(r"recording_byte_range_p\w+", "PART", re.sub(r"\s+", " ", statement))
        total = self._totals[name[:100]]
        total[0] += 1
        total[1] += elapsed


if __name__ == "__main__":
    main()
