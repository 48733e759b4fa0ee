"""`vault-store bench --quick` on tiny synthetic data: the output's shape, never its timings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, need
from tests.integration.helpers import run
from vault_store.cli.bench import load_suite, show, show_catalog, show_deletes


def test_quick_bench_reports_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "no-recordings"
    empty.mkdir()  # nothing here: the bench falls back to small synthetic sessions
    env = {"VAULT_STORE_HOME": str(tmp_path / "home"), "VAULT_STORE_RECORDINGS": str(empty)}
    result = run(
        {**os.environ, **env}, "bench", "--quick", "--json", "--plots", str(tmp_path / "plots")
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report = json.loads(result.stdout)
    assert report["quick"] is True and report["recordings_from"].startswith("synthetic")
    assert report["representative"] is False
    assert set(report) >= {
        "ingest",
        "writes",
        "reads",
        "deletes",
        "cost",
        "traffic",
        "machine",
        "plots",
    }
    variants = report["ingest"]["variants"]
    assert set(variants) == {
        "raw zstd+AES-GCM",
        "library (packed)",
        "library (packed), replays of ~40 segments",
        "one object per segment",
    }
    assert report["ingest"]["ratio_goal"] == report["reads"]["decode"]["ratio_goal"] == 0.8
    assert variants["raw zstd+AES-GCM"]["ratio_to_raw"] == 1.0
    flushes = report["writes"]["by_flush_size"]
    assert [f["flush_mib"] for f in flushes] == [0.25, 1, 8]
    objects = [f["objects_per_million_segments"] for f in flushes]
    assert (
        objects == sorted(objects, reverse=True) and objects[0] < 1_000_000
    )  # bigger flush, fewer objects
    reads = {(r["segments"], r["way"]): r["requests"] for r in report["reads"]["by_length"]}
    assert (
        reads[(100, "one object per segment")] == 100
        and reads[(100, "one request per range")] == 100
    )
    assert reads[(100, "coalesced ranges")] < 10
    assert {d["segments"] for d in report["deletes"]["shred_by_replay_size"]} == {1, 10, 100}
    assert report["deletes"]["shred_largest_to_1_segment"] > 0
    assert report["deletes"]["shred_ratio_limit"] == 1.5
    assert report["deletes"]["forced_overwrite"]["bytes_zeroed"] > 0
    costs = report["cost"]["per_million_segments_per_month"]
    naive = next(c for c in costs if c["layout"] == "one object per segment")
    assert naive["writes"] == 5.0  # a million class A operations at $0.005 per 1,000
    assert all(c["total"] < naive["total"] for c in costs if c["layout"] == "packed")
    for routing in ("random", "by_replay"):
        traffic = report["traffic"][routing]
        assert traffic["kms"]["calls_by_compaction"] == 0
        # Compacted, every replay reads in one ranged GET; spread, longer ones needed more.
        assert {gets_after for _n, _before, gets_after in traffic["points"]} == {1}
        assert max(before for _n, before, _after in traffic["points"]) > 1
        cost = traffic["cost"]
        assert cost["packed_and_compacted"]["reads"] < cost["packed"]["reads"]
    for name in (
        "throughput_vs_flush_size.png",
        "cost_vs_flush_size.png",
        "gets_vs_replay_length.png",
    ):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The tables of the same results say so too, and a full run's do not.
    show(report)
    assert "NOT representative" in capsys.readouterr().out
    show({**report, "representative": True})
    assert "representative" not in capsys.readouterr().out


def test_a_plots_directory_that_cannot_be_made_is_refused_before_measuring(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "VAULT_STORE_HOME": str(tmp_path / "home")}
    result = run(env, "bench", "--quick", "--plots", str(blocker / "plots"))
    assert result.returncode == 2, result.stderr
    assert b"--plots" in result.stderr and str(blocker).encode() in result.stderr
    assert b"measuring" not in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.postgres
def test_the_deletes_section_times_the_replay_shreds_on_postgresql_too(
    tmp_path: Path, postgres_available: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    need(postgres_available, f"PostgreSQL not reachable at {PG_URL}")
    deletes = _quick_postgresql_section(tmp_path, "deletes")
    # New keys beside the old ones (SQLite's), which keep their names.
    assert {"shred_by_replay_size", "shred_largest_to_1_segment", "shred_ratio_limit"} <= set(
        deletes
    )
    postgresql = deletes["postgresql_shred_by_replay_size"]
    assert [d["segments"] for d in postgresql] == [1, 10, 100]
    assert all(d["ms"] > 0 for d in postgresql)
    assert deletes["postgresql_shred_largest_to_1_segment"] > 0
    show_deletes(deletes)
    assert "shred on PostgreSQL (1: " in capsys.readouterr().out


@pytest.mark.postgres
def test_the_catalog_section_prints_the_insert_beside_both_of_its_limits(
    tmp_path: Path, postgres_available: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    need(postgres_available, f"PostgreSQL not reachable at {PG_URL}")
    catalog = _quick_postgresql_section(tmp_path, "catalog_rows")
    # The keys of earlier versions stay; the limit with the flush's statements is added.
    assert {
        "sqlite_rows_per_second",
        "postgresql_rows_per_second",
        "postgresql_bare_copy_rows_per_second",
        "postgresql_insert_to_bare_copy",
        "postgresql_goal_rows_per_second",
    } <= set(catalog)
    bound = catalog["postgresql_copy_with_flush_statements_rows_per_second"]
    assert bound > 0
    ratio = catalog["postgresql_insert_to_copy_with_flush_statements"]
    assert abs(ratio - catalog["postgresql_rows_per_second"] / bound) < 0.01
    # The bare COPY in the binary form the insert sends since stop 28, beside the text one.
    binary = catalog["postgresql_bare_binary_copy_rows_per_second"]
    assert binary > 0
    ratio = catalog["postgresql_insert_to_bare_binary_copy"]
    assert abs(ratio - catalog["postgresql_rows_per_second"] / binary) < 0.01
    show_catalog(catalog)
    out = capsys.readouterr().out
    assert "against a bare text COPY of the same rows" in out
    assert f"binary form the insert sends: {binary:,} rows/s" in out
    assert "limit with a flush's locks, admission and blob row" in out


def _quick_postgresql_section(tmp_path: Path, section: str) -> dict[str, Any]:
    """One section of a quick bench run with PostgreSQL and no recordings, as its JSON."""
    empty = tmp_path / "no-recordings"
    empty.mkdir()
    suite = load_suite()
    bench = suite.Bench(quick=True, pg_url=PG_URL, recordings=empty)
    try:
        result: dict[str, Any] = getattr(suite, section)(bench)
    finally:
        bench.close()
    return result
