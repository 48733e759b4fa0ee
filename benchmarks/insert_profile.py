"""Where a flush's time goes on PostgreSQL: `Catalog.insert_blob` step by step, beside its bounds.

Run:  python benchmarks/insert_profile.py [--rows 200000] [--rounds 3] [--pg URL] [--json]

The rows are `vault-store bench`'s (benchmarks/suite.py `synthetic_flushes`: 5,000-row flushes,
500 new replays each, one partition). Each round measures, into fresh schemas, in alternating
order:

- production: `Catalog.insert_blob`, with the wall time and this process's CPU time of each
  step (the admission statement: locks, tombstones, replay rows; the COPY, encoding included;
  the blob row; the rest: begin, commit, Python glue), and the server backend's CPU time (read
  from /proc, so only for a server on this host);
- bare COPY: the bench's bound, the same rows COPYed into the same migrated partitioned table
  (primary key and BRIN index) in the production path's binary form, encoded before timing,
  one transaction per flush;
- COPY with the flush's statements: the bare COPY plus the statements a flush keeps (the locks
  and admission, the blob row), sent prepared, with no Python between (suite.py);
- the encoding of the binary COPY alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite

import vault_store.catalog.catalog as catalog_module
from vault_store.catalog import Catalog, copy_rows
from vault_store.catalog.partitions import bucket_of

PG_URL = os.environ.get("VAULT_STORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STEPS = {
    "admission": (catalog_module.Catalog, "_admit_postgresql"),
    "copy": (catalog_module, "_insert_ranges_postgresql"),
    "blob_row": (catalog_module, "record_uploaded"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    measures: dict[str, Callable[[str, int], dict[str, float]]] = {
        "production": production,
        "bare_copy": bare_copy,
        "copy_with_flush_statements": copy_with_statements,
    }
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    for round_number in range(args.rounds):
        names = list(measures)
        names = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in names:
            with suite._scratch_schema(args.pg) as url:
                runs[name].append(measures[name](url, args.rows))
        runs["rendering"].append({"seconds": rendering(args.rows)})
        if not args.json:
            print(
                f"round {round_number}: "
                + ", ".join(
                    f"{n} {args.rows / r[-1]['seconds']:,.0f} rows/s" for n, r in runs.items()
                ),
                file=sys.stderr,
            )
    result = {
        name: {key: round(statistics.median(r[key] for r in rs), 4) for key in rs[0]}
        for name, rs in runs.items()
    }
    for measured in result.values():
        measured["rows_per_second"] = round(args.rows / measured["seconds"])
    result["rows"] = {"rows": args.rows, "rounds": args.rounds, "flushes": args.rows // 5000}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"medians of {args.rounds} rounds of {args.rows:,} rows ({args.rows // 5000} flushes)")
    for name, measured in result.items():
        if name != "rows":
            print(f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in measured.items()))


def production(url: str, rows: int) -> dict[str, float]:
    """Catalog.insert_blob on the bench's rows, step by step."""
    catalog = Catalog(url, engine_options={"pool_size": 1, "max_overflow": 0})
    catalog.migrate()
    flushes = suite.synthetic_flushes(rows)
    catalog.ensure_partition(bucket_of(flushes[0][0].expires_at))
    with catalog.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    wall: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    with _timed_steps(wall, cpu):
        server, client, started = _backend_cpu(pid), time.process_time(), time.perf_counter()
        for blob, ranges in flushes:
            catalog.insert_blob(blob, ranges)
        seconds = time.perf_counter() - started
        client, server = time.process_time() - client, _backend_cpu(pid) - server
    catalog.dispose()
    measured = {"seconds": seconds, "client_cpu": client, "server_cpu": server}
    for step in STEPS:
        measured[f"{step}_seconds"] = wall[step]
        measured[f"{step}_client_cpu"] = cpu[step]
    measured["rest_seconds"] = seconds - sum(wall.values())
    measured["rest_client_cpu"] = client - sum(cpu.values())
    return measured


@contextmanager
def _timed_steps(wall: dict[str, float], cpu: dict[str, float]) -> Iterator[None]:
    """Wrap each step's function to add up its wall and CPU time; unwrapped after."""
    originals = {step: getattr(owner, name) for step, (owner, name) in STEPS.items()}

    def timed(step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started, used = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                wall[step] += time.perf_counter() - started
                cpu[step] += time.process_time() - used

        return run

    for step, (owner, name) in STEPS.items():
        setattr(owner, name, timed(step, originals[step]))
    try:
        yield
    finally:
        for step, (owner, name) in STEPS.items():
            setattr(owner, name, originals[step])


def bare_copy(url: str, rows: int) -> dict[str, float]:
    """The bench's bare COPY (suite.prepared_copies), with the CPU times."""
    with suite.prepared_copies(url, rows, binary=True, flush_statements=False) as (run, pid):
        server, client, started = _backend_cpu(pid), time.process_time(), time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        client, server = time.process_time() - client, _backend_cpu(pid) - server
    return {"seconds": seconds, "client_cpu": client, "server_cpu": server}


def copy_with_statements(url: str, rows: int) -> dict[str, float]:
    return {"seconds": rows / suite._copy_rows(url, rows, binary=True, flush_statements=True)}


def rendering(rows: int) -> float:
    """Seconds to encode the rows' binary COPY as the production path does."""
    flushes = suite.synthetic_flushes(rows)
    started = time.perf_counter()
    for blob, ranges in flushes:
        bucket = bucket_of(blob.expires_at)
        buckets = {(row.project_id, row.replay_id): bucket for row in ranges}
        for _chunk in copy_rows.binary_copy(ranges, buckets, "utf_8"):
            pass
    return time.perf_counter() - started


def _backend_cpu(pid: int) -> float:
    """User and system CPU seconds of a server backend (NaN when /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
