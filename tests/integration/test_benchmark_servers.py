"""The benchmarks' own PostgreSQL (benchmarks/own_postgres.py): its settings, its restart, and
that a benchmark never restarts the machine's shared server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.conftest import need
from vault_store.catalog import Catalog

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import catalog_scale  # noqa: E402
import own_postgres  # noqa: E402


def _started_at(url: str) -> datetime:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        (started,) = cursor.fetchone() or (None,)
    assert isinstance(started, datetime)
    return started


def _setting(url: str, name: str) -> str:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        (value,) = cursor.fetchone() or ("",)
    return str(value)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[str, own_postgres.Cluster]]:
    need(shutil.which("runuser") is not None, "runuser is missing")
    try:
        own_postgres.binaries()
    except SystemExit as missing:
        need(False, str(missing))
    settings = own_postgres.parse_settings(["shared_buffers=48MB", "work_mem=7MB"], stock=True)
    with own_postgres.own_postgres(settings) as (url, cluster):
        yield url, cluster
    assert not cluster.directory.exists(), "the cluster's directory is removed afterwards"


def test_an_own_server_runs_with_its_settings_and_keeps_durability(
    own_server: tuple[str, own_postgres.Cluster],
) -> None:
    url, _cluster = own_server
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert _setting(url, "shared_buffers") == "48MB"
    assert _setting(url, "work_mem") == "7MB"
    for durable in ("fsync", "synchronous_commit", "full_page_writes"):
        assert _setting(url, durable) == "on"


def test_sized_settings_follow_the_machines_memory() -> None:
    settings = own_postgres.sized_settings()
    memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    assert settings["shared_buffers"] == f"{memory_mib // 4}MB"
    assert not {"fsync", "synchronous_commit", "full_page_writes"} & set(settings)
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        own_postgres.parse_settings(["shared_buffers"], stock=False)


def test_emptying_caches_restarts_only_the_benchmarks_own_server(
    own_server: tuple[str, own_postgres.Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cluster = own_server
    catalog = Catalog(url)
    try:
        # Not started by own_postgres.py for this process: nothing may be restarted, whatever
        # server it is (the machine's is shared). The commands are recorded, not run. (The
        # machine's page cache is left alone: other tests run beside this one.)
        monkeypatch.delenv(own_postgres.DATA_ENV, raising=False)
        before = _started_at(url)
        commands: list[list[str]] = []

        def record(command: list[str], *args: Any, **kwargs: Any) -> Any:
            commands.append(list(command))
            return subprocess.CompletedProcess(command, 0)

        with monkeypatch.context() as patched:
            patched.setattr(subprocess, "run", record)
            told = catalog_scale.empty_caches(catalog, page_cache=False)
        assert not [c for c in commands if any("pg_ctl" in part for part in c)], commands
        assert "server restart" not in told
        assert _started_at(url) == before

        # Its own server (named by own_postgres.py's environment) is restarted: its buffers
        # are emptied, and the catalog reconnects.
        monkeypatch.setenv(own_postgres.DATA_ENV, str(cluster.directory))
        told = catalog_scale.empty_caches(catalog, page_cache=False)
        assert "server restart" in told
        assert _started_at(url) > before
    finally:
        catalog.dispose()


def test_the_wrapper_runs_a_command_against_its_server_and_passes_on_its_exit_code() -> None:
    need(shutil.which("runuser") is not None, "runuser is missing")
    script = (
        "import os, sys, psycopg2; url = sys.argv[1]; "
        "assert url == os.environ['VAULT_STORE_BENCH_PG'], url; "
        "psycopg2.connect(url).close(); "
        "print(os.environ['VAULT_STORE_BENCH_PG_DATA']); sys.exit(3)"
    )
    wrapper = [sys.executable, str(BENCHMARKS / "own_postgres.py"), "--stock", "--"]
    done = subprocess.run(
        [*wrapper, sys.executable, "-c", script, "{url}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    directory = Path(done.stdout.strip())
    assert directory.name.startswith("vault-store-pg-")
    assert not directory.exists(), "stopped and removed after the command"
