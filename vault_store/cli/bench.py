"""`vault-store bench`: the benchmark suite in benchmarks/suite.py, as tables, JSON and plots."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from rich.table import Table

from vault_store.cli.common import (
    EXIT_USAGE,
    check_output_dir,
    emit_json,
    reporting_errors,
    show_progress,
    stderr,
    stdout,
)
from vault_store.settings import Settings

_PACKAGE_DIR = Path(__file__).resolve().parents[1]

NOT_REPRESENTATIVE = (
    "--quick: small data and few rounds; these numbers are NOT representative (run without "
    "--quick to measure)"
)


def load_suite() -> ModuleType:
    """benchmarks/suite.py from the wheel (vault_store/_benchmarks) or the source checkout."""
    for candidate in (_PACKAGE_DIR / "_benchmarks", _PACKAGE_DIR.parent / "benchmarks"):
        path = candidate / "suite.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("vault_store_bench_suite", path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise click.ClickException("the benchmark suite is missing from this installation")


@click.command()
@click.option("--quick", is_flag=True, help="Small data, fewer rounds: under a minute.")
@click.option("--pg", "pg_url", help="PostgreSQL URL for catalog rows/s (a scratch schema).")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), help="Write PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench(quick: bool, pg_url: str | None, plots: Path | None, as_json: bool) -> None:
    """Measure ingest, writes, reads, deletes and cost, packed against one object per segment."""
    if plots is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            stderr.print("--plots needs matplotlib: pip install 'vault-store[bench]'")
            sys.exit(EXIT_USAGE)
        with reporting_errors(as_json=as_json):
            check_output_dir(plots, "--plots")  # before minutes of measuring, not after
    suite = load_suite()
    settings = Settings.from_env()

    def progress(section: str) -> None:
        if show_progress() and not as_json:
            stderr.print(f"measuring {section}...")

    results = suite.run(
        quick=quick, pg_url=pg_url, recordings=settings.recordings, progress=progress
    )
    if plots is not None:
        results["plots"] = [str(p) for p in write_plots(results, plots)]
    if as_json:
        emit_json(results)
        return
    show(results)
    if not results.get("representative", True):
        stdout.print(NOT_REPRESENTATIVE, style="bold yellow")  # again: the tables scroll it away


def show(results: dict[str, Any]) -> None:
    """The results as tables."""
    if not results.get("representative", True):
        stdout.print(NOT_REPRESENTATIVE, style="bold yellow")
    ingest = results["ingest"]
    goal = f", goal at least {ingest['ratio_goal']}x raw" if "ratio_goal" in ingest else ""
    _table(
        f"ingest: {ingest['segments']} segments, {ingest['megabytes']} MB{goal}",
        ["variant", "segments/s", "MB/s", "x raw"],
        [
            [n, v["segments_per_second"], v["megabytes_per_second"], v["ratio_to_raw"]]
            for n, v in ingest["variants"].items()
        ],
    )
    writes = results["writes"]
    _table(
        "objects written per million segments",
        ["flush size MiB", "objects / 1M segments", "segments/s"],
        [
            [w["flush_mib"], f"{w['objects_per_million_segments']:,}", w["segments_per_second"]]
            for w in writes["by_flush_size"]
        ]
        + [["one object per segment", "1,000,000", ""]],
    )
    show_catalog(writes["catalog"])
    reads = results["reads"]
    _table(
        "reads",
        ["segments", "way", "median ms", "requests"],
        [[r["segments"], r["way"], r["median_ms"], r["requests"]] for r in reads["by_length"]],
    )
    decode = reads["decode"]
    stdout.print(
        f"decode: library {decode['library_mb_per_second']} MB/s, "
        f"raw {decode['raw_mb_per_second']} MB/s ({decode['ratio_to_raw']}x"
        + (f", goal at least {decode['ratio_goal']}x)" if "ratio_goal" in decode else ")")
    )
    show_deletes(results["deletes"])
    cost = results["cost"]
    _table(
        f"USD per million segments per month ({cost['stored_gb_per_million_segments']} GB stored)",
        ["layout", "flush MiB", "writes", "storage", "reads", "kms", "total"],
        [
            [
                c["layout"],
                c["flush_mib"] or "",
                c["writes"],
                c["storage"],
                c["reads"],
                c["kms"],
                c["total"],
            ]
            for c in cost["per_million_segments_per_month"]
        ],
    )
    if "traffic" in results:
        show_traffic(results["traffic"])


def show_catalog(catalog: dict[str, Any]) -> None:
    """The catalog inserts: rows/s per database, and on PostgreSQL beside its limits."""
    _table(
        "catalog inserts",
        ["catalog", "rows/s"],
        [
            [k.split("_")[0], f"{v:,}"]
            for k, v in catalog.items()
            # The limits and the goal are printed below, beside the insert they bound.
            if k.endswith("_rows_per_second") and not any(w in k for w in ("copy", "goal"))
        ],
    )
    if "postgresql_bare_copy_rows_per_second" in catalog:
        stdout.print(
            f"PostgreSQL insert: {catalog['postgresql_rows_per_second']:,} rows/s against a bare "
            f"text COPY of the same rows at {catalog['postgresql_bare_copy_rows_per_second']:,} "
            f"({catalog['postgresql_insert_to_bare_copy']}x); goal "
            f"{catalog['postgresql_goal_rows_per_second']:,} rows/s"
        )
    if "postgresql_bare_binary_copy_rows_per_second" in catalog:
        stdout.print(
            "  a bare COPY in the binary form the insert sends: "
            f"{catalog['postgresql_bare_binary_copy_rows_per_second']:,} rows/s "
            f"({catalog['postgresql_insert_to_bare_binary_copy']}x)"
        )
    if "postgresql_copy_with_flush_statements_rows_per_second" in catalog:
        stdout.print(
            "  limit with a flush's locks, admission and blob row around the binary COPY "
            f"(prepared, no Python): "
            f"{catalog['postgresql_copy_with_flush_statements_rows_per_second']:,} rows/s "
            f"({catalog['postgresql_insert_to_copy_with_flush_statements']}x)"
        )


def show_deletes(deletes: dict[str, Any]) -> None:
    """The deletes section: shred latency by replay size (and on PostgreSQL with --pg), the
    project shred and the forced overwrite."""
    _table(
        "shred latency",
        ["segments", "ms"],
        [[d["segments"], d["ms"]] for d in deletes["shred_by_replay_size"]],
    )
    stdout.print(
        f"shred, largest replay against one segment: {deletes['shred_largest_to_1_segment']}x "
        f"(limit {deletes['shred_ratio_limit']}x)"
    )
    if "postgresql_shred_by_replay_size" in deletes:
        by_size = ", ".join(
            f"{d['segments']}: {d['ms']} ms" for d in deletes["postgresql_shred_by_replay_size"]
        )
        stdout.print(
            f"shred on PostgreSQL ({by_size}): largest against one segment "
            f"{deletes['postgresql_shred_largest_to_1_segment']}x "
            f"(limit {deletes['shred_ratio_limit']}x)"
        )
    overwrite = deletes["forced_overwrite"]
    stdout.print(
        f"project shred: {deletes['project_shred_rows_per_second']:,} rows/s; "
        f"forced overwrite rewrites {overwrite['rewritten_per_byte_deleted']} bytes "
        "per byte deleted"
    )


def show_traffic(traffic: dict[str, Any]) -> None:
    """The traffic model's tables: per routing, reads by replay length, then writes and cost."""
    for key in ("random", "by_replay"):
        run = traffic.get(key)
        if run is None:
            continue
        routing = key.replace("_", " ")
        _table(
            f"traffic, routed {routing}: {run['segments']:,} segments, {run['replays']:,} replays",
            [
                "segments",
                "replays",
                "blobs touched",
                "GETs before",
                "GETs after",
                "read s before",
                "read s after",
                "first byte s",
            ],
            [
                [
                    r["segments"],
                    r["replays"],
                    r["blobs_touched_before"],
                    r["gets_before"],
                    r["gets_after"],
                    r["read_seconds_before"],
                    r["read_seconds_after"],
                    r["first_byte_seconds_after"],
                ]
                for r in run["by_length"]
            ],
        )
        objects, kms, cost = run["objects_written"], run["kms"], run["cost"]
        stdout.print(
            f"objects per million segments: {objects['per_million_segments_flush']:,} by flushes "
            f"+ {objects['per_million_segments_compaction']:,} by compaction (one per "
            f"{objects['compacted_segments_per_compaction_write']:,} segments); KMS wraps "
            f"{kms['wraps_per_million_segments']:,} per million segments, none by compaction"
        )
        _table(
            "USD per million segments per month",
            ["layout", "writes", "storage", "reads", "kms", "total"],
            [
                [
                    name.replace("_", " "),
                    c["writes"],
                    c["storage"],
                    c["reads"],
                    c["kms"],
                    c["total"],
                ]
                for name, c in cost.items()
                if isinstance(c, dict)
            ],
        )
        stdout.print(
            f"compacted: {cost['compacted_saving_against_one_object_per_segment']:.1%} below one "
            f"object per segment; extra storage {cost['extra_storage_share_of_month']:.1%} of the "
            f"month's storage ({cost['extra_storage_share_without_soft_delete']:.2%} without "
            "soft delete)"
        )


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    stdout.print(table)


def write_plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """Throughput and cost against flush size, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    flushes = results["writes"]["by_flush_size"]
    sizes = [f["flush_mib"] for f in flushes]
    written = []

    figure, left = plt.subplots(figsize=(7, 4))
    left.plot(sizes, [f["segments_per_second"] for f in flushes], marker="o", color="tab:blue")
    left.set_xscale("log", base=2)
    left.set_xlabel("flush size (MiB)")
    left.set_ylabel("ingest segments/s", color="tab:blue")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(
        sizes, [f["objects_per_million_segments"] for f in flushes], marker="s", color="tab:red"
    )
    right.set_yscale("log")
    right.set_ylabel("objects per million segments", color="tab:red")
    left.set_title("Ingest throughput and object writes against flush size")
    figure.tight_layout()
    path = directory / "throughput_vs_flush_size.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)

    costs = results["cost"]["per_million_segments_per_month"]
    naive = next(c for c in costs if c["layout"] == "one object per segment")
    packed = [c for c in costs if c["layout"] == "packed"]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(
        [c["flush_mib"] for c in packed],
        [c["total"] for c in packed],
        marker="o",
        label="packed (vault-store)",
    )
    axis.axhline(naive["total"], color="tab:red", linestyle="--", label="one object per segment")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("flush size (MiB)")
    axis.set_ylabel("USD per million segments per month")
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.set_title("Monthly cost against flush size (GCS and Cloud KMS list prices)")
    figure.tight_layout()
    path = directory / "cost_vs_flush_size.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)
    if "traffic" in results:
        # The traffic model draws its own plot (benchmarks/traffic.py, beside the suite).
        path = directory / "gets_vs_replay_length.png"
        written.append(load_suite().traffic_plot(results["traffic"], path))
    return written
