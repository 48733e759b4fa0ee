"""What a new operator meets: a home that is not there, a database that hangs or refuses, bad
paths, re-ingested files, closed pipes, and a server whose backends are down."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PG_URL, RECORDINGS_DIR, need
from tests.integration.helpers import run
from vault_store import Settings, Vault
from vault_store.api.app import create_app
from vault_store.catalog import Catalog
from vault_store.cli.ingest_summary import split_segments
from vault_store.core.crypto import FrameIdentity
from vault_store.errors import ConfigError
from vault_store.services.ingest import FlushResult

REPLAY = "0123456789abcdef0123456789abcdef"
DEMO_FILE = RECORDINGS_DIR / "rrweb" / "rrweb-player-demo-events.json"
GZIPPED = RECORDINGS_DIR / "posthog-react-rrweb-player" / "local-docs.json.gz"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_database_that_never_answers_fails_within_the_timeout_naming_host_and_port(
    silent_server: int, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": f"postgresql://vault:sekrit@127.0.0.1:{silent_server}/db",
        "VAULT_STORE_DB_CONNECT_TIMEOUT": "1",
    }
    # run() bounds the process at 120 s: without a connect timeout it would hang past that.
    result = run(env, "stats")
    assert result.returncode == 6, result.stderr
    message = result.stderr.decode()
    assert f"127.0.0.1:{silent_server}" in message
    assert "sekrit" not in message


def test_a_missing_postgres_database_is_a_configuration_error(
    postgres_available: bool, tmp_path: Path
) -> None:
    need(postgres_available, "PostgreSQL not reachable")
    url = PG_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    env = {**os.environ, "VAULT_STORE_HOME": str(tmp_path), "VAULT_STORE_DATABASE_URL": url}
    result = run(env, "migrate")
    assert result.returncode == 2, result.stderr
    assert b"no_such_database_here" in result.stderr and b"configuration error" in result.stderr


def test_postgres_keeps_the_urls_own_options_and_sets_the_statement_timeout(
    postgres_url: str,
) -> None:
    # The URL's options: the test schema's search path, and JIT turned back on (the catalog's
    # own `-c jit=off` comes first, so the URL's wins).
    catalog = Catalog(f"{postgres_url}%20-c%20jit%3Don", statement_timeout=7.5)
    try:
        with catalog.engine.connect() as conn:
            search_path = conn.exec_driver_sql("SHOW search_path").scalar_one()
            timeout = conn.exec_driver_sql("SHOW statement_timeout").scalar_one()
            jit = conn.exec_driver_sql("SHOW jit").scalar_one()
    finally:
        catalog.dispose()
    assert search_path == postgres_url.rsplit("%3D", 1)[1]
    assert timeout == "7500ms"
    assert jit == "on"


def test_postgres_catalog_connections_do_not_compile_plans_just_in_time(
    postgres_url: str,
) -> None:
    # A project shred's counts over 146 partitions spent 160 ms compiling and 20 ms counting.
    catalog = Catalog(postgres_url)
    plans = []
    try:
        with catalog.engine.connect() as conn:
            settings = [conn.exec_driver_sql("SHOW jit").scalar_one()]
            can_compile = conn.exec_driver_sql("SELECT pg_jit_available()").scalar_one()
            # Every plan costs more than this: with JIT on, every plan would be compiled.
            conn.exec_driver_sql("SET jit_above_cost = 0")
            plans.append(conn.exec_driver_sql(_COSTLY_PLAN).scalar_one())
        with catalog._driver_cursor() as cursor:  # the pooled cursors the reads run on
            cursor.execute("SHOW jit")
            settings.append(cursor.fetchone()[0])
            cursor.execute("SET jit_above_cost = 0")
            cursor.execute(_COSTLY_PLAN)
            plans.append(cursor.fetchone()[0])
    finally:
        catalog.dispose()
    assert settings == ["off", "off"]
    if can_compile:  # a server built without LLVM never compiles: the setting is the proof then
        assert [("JIT" in plan[0]) for plan in plans] == [False, False]


_COSTLY_PLAN = "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM generate_series(1, 1000)"


def test_a_home_that_cannot_be_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run({**os.environ, "VAULT_STORE_HOME": str(blocker / "home")}, "ingest", "-h")
    assert result.returncode == 0
    result = run({**os.environ, "VAULT_STORE_HOME": str(blocker / "home")}, "migrate")
    assert result.returncode == 2, result.stderr
    assert str(blocker).encode() in result.stderr


def test_a_read_only_sqlite_catalog_is_a_configuration_error_naming_the_file(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "VAULT_STORE_HOME": str(home)}
    assert run(env, "migrate").returncode == 0
    catalog_file = home / "catalog.sqlite3"
    # As root, file modes do not stop writes: open the database read-only instead.
    env["VAULT_STORE_DATABASE_URL"] = f"sqlite:///file:{catalog_file}?mode=ro&uri=true"
    message = home / "m.msgpack"
    from vault_store.core.message import build_message

    message.write_bytes(build_message(project_id=1, replay_id=REPLAY, segment_id=0, body=b"[]"))
    result = run(env, "ingest", str(message))
    assert result.returncode == 2, result.stderr
    assert b"configuration error" in result.stderr and str(catalog_file).encode() in result.stderr


def test_read_only_commands_on_a_missing_home_exit_2_and_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "never-used"
    env = {**os.environ, "VAULT_STORE_HOME": str(home)}
    for args in (
        ("stats",),
        ("read", "--project", "1", "--replay", REPLAY),
        ("keys", "status"),
        ("token", "list"),
        ("audit", "verify"),
        (
            "audit",
            "report",
            "--since",
            "2026-01-01",
            "--until",
            "2026-02-01",
            "-o",
            str(tmp_path / "r.html"),
        ),
        ("deletion", "status", "0" * 32),
    ):
        result = run(env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"no vault at {home}".encode() in result.stderr
    assert not home.exists()


def test_the_default_home_is_absolute_and_per_user() -> None:
    settings = Settings.from_env({})
    assert settings.home.is_absolute()
    assert settings.home.name == "vault-store"
    assert Settings.from_env({"VAULT_STORE_HOME": "/tmp/elsewhere"}).home == Path("/tmp/elsewhere")


def test_an_output_path_problem_is_exit_2_before_any_work(
    home: dict[str, str], tmp_path: Path
) -> None:
    need(DEMO_FILE.is_file(), f"{DEMO_FILE} missing")
    ingest = ("ingest", "--rrweb", str(DEMO_FILE), "--project", "9", "--replay", REPLAY)
    assert run(home, *ingest).returncode == 0
    missing = tmp_path / "nonexistent" / "dir" / "out.json"
    result = run(home, "read", "--project", "9", "--replay", REPLAY, "-o", str(missing))
    assert result.returncode == 2, result.stderr
    assert str(missing.parent).encode() in result.stderr and b"Traceback" not in result.stderr
    # A directory as the output file is refused too, and checked before the home.
    elsewhere = {**home, "VAULT_STORE_HOME": str(tmp_path / "no-home")}
    result = run(elsewhere, "read", "--project", "9", "--replay", REPLAY, "-o", str(tmp_path))
    assert result.returncode == 2 and b"is a directory" in result.stderr
    result = run(home, "sample", "-o", str(missing))
    assert result.returncode == 2 and b"Traceback" not in result.stderr


def test_read_into_a_closed_pipe_ends_quietly_with_0(home: dict[str, str]) -> None:
    need(DEMO_FILE.is_file(), f"{DEMO_FILE} missing")
    ingest = ("ingest", "--rrweb", str(DEMO_FILE), "--project", "9", "--replay", REPLAY)
    assert run(home, *ingest).returncode == 0
    reader = subprocess.Popen(
        [sys.executable, "-m", "vault_store", "read", "--project", "9", "--replay", REPLAY],
        env=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.read(10) == b'[[{"type":'
    reader.stdout.close()  # as `head` does: the recording is far larger than a pipe buffer
    errors = reader.stderr.read()
    assert reader.wait(timeout=60) == 0, errors
    assert errors == b""


def test_reingesting_a_file_counts_duplicates_not_stored_segments(
    home: dict[str, str], tmp_path: Path
) -> None:
    sample = tmp_path / "sample.msgpack"
    made = run(home, "sample", "-o", str(sample), "--json")
    assert made.returncode == 0, made.stderr
    messages = json.loads(made.stdout)["messages"]
    first = json.loads(run(home, "ingest", str(sample), "--json").stdout)
    assert (first["segments"], first["duplicates"]) == (messages, 0)
    again = run(home, "ingest", str(sample), "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["segments"], second["duplicates"], second["rows_inserted"]) == (0, messages, 0)
    assert second["segments_received"] == messages


def test_a_blobs_segments_are_split_by_its_rows() -> None:
    def result(identities: list[tuple[int, str]], counts: tuple[int, int, int]) -> FlushResult:
        frames = [FrameIdentity(1, REPLAY, segment, part) for segment, part in identities]
        return FlushResult("p", 30, tuple(frames), len(frames), 1, *counts)

    two_parts_each = [(0, "dom"), (0, "console"), (1, "dom"), (1, "console")]
    assert split_segments(result(two_parts_each, (4, 0, 0))) == (2, 0, 0)
    assert split_segments(result(two_parts_each, (0, 4, 0))) == (0, 2, 0)
    assert split_segments(result(two_parts_each, (0, 0, 4))) == (0, 0, 2)
    assert split_segments(result(two_parts_each, (2, 2, 0))) == (1, 1, 0)
    assert sum(split_segments(result([(0, "r"), (1, "r"), (2, "r")], (1, 1, 1)))) == 3


def test_rrweb_accepts_gzip_and_standard_input(home: dict[str, str], tmp_path: Path) -> None:
    need(GZIPPED.is_file(), f"{GZIPPED} missing")
    result = run(
        home, "ingest", "--rrweb", str(GZIPPED), "--project", "4", "--replay", REPLAY, "--json"
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["segments"]
    assert stored > 0
    other = "f" * 32
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "vault_store",
            "ingest",
            "--rrweb",
            "-",
            "--project",
            "4",
            "--replay",
            other,
            "--json",
        ],
        env=home,
        input=gzip.decompress(GZIPPED.read_bytes()),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["segments"] == stored
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(GZIPPED.read_bytes()[:1000])
    result = run(home, "ingest", "--rrweb", str(broken), "--project", "4", "--replay", REPLAY)
    assert result.returncode == 2 and b"gzip" in result.stderr


def test_token_revoke_of_an_unknown_id_is_a_usage_error(home: dict[str, str]) -> None:
    assert run(home, "migrate").returncode == 0
    result = run(home, "token", "revoke", "nosuchtoken")
    assert result.returncode == 2 and b"nosuchtoken" in result.stderr


def test_serve_refuses_a_busy_port_with_exit_2(home: dict[str, str]) -> None:
    assert run(home, "migrate").returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run(home, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{port}".encode() in result.stderr


def test_serve_refuses_to_start_with_a_key_file_others_can_read(home: dict[str, str]) -> None:
    assert run(home, "migrate").returncode == 0
    key_file = Path(home["VAULT_STORE_HOME"]) / "kek.json"
    assert run(home, "keys", "status").returncode == 0
    key_file.chmod(0o644)
    result = run(home, "serve", "--port", "1")
    assert result.returncode == 2, result.stderr
    assert b"chmod 600" in result.stderr


def test_healthz_names_the_backend_that_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.embedded(tmp_path / "home")
    vault = Vault.from_settings(settings)
    client = TestClient(create_app(lambda: vault))
    assert client.get("/healthz").json() == {"status": "ok"}
    # The blob directory replaced by a file: every blob read now fails.
    blobs = tmp_path / "home" / "blobs"
    blobs.rmdir() if blobs.is_dir() else None
    blobs.write_text("in the way")
    reply = client.get("/healthz")
    assert reply.status_code == 503
    assert reply.json() == {"status": "down", "down": ["blob_store"]}
    assert any("blob_store is down" in record.getMessage() for record in caplog.records)
    vault.close()

    def broken() -> Vault:
        raise ConfigError("VAULT_STORE_KMS_URL: nope")

    reply = TestClient(create_app(broken)).get("/healthz")
    assert reply.status_code == 503 and reply.json()["down"] == ["configuration"]
    assert "nope" not in reply.text


def test_gc_refuses_a_negative_grace(home: dict[str, str]) -> None:
    result = run(home, "gc", "--grace", "-5")
    assert result.returncode == 2 and b"--grace" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("command", "celery_option"), [("worker", "--concurrency"), ("beat", "--schedule")]
)
def test_worker_and_beat_help_need_no_broker_url(
    home: dict[str, str], command: str, celery_option: str
) -> None:
    env = {key: value for key, value in home.items() if key != "VAULT_STORE_BROKER_URL"}
    result = run(env, command, "--help")
    assert result.returncode == 0, result.stderr
    # Ours first, then Celery's own options.
    assert f"vault_store {command} [OPTIONS]".encode() in result.stdout
    assert celery_option.encode() in result.stdout
