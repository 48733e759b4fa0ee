"""The `vault-store` command as a real process: ingest, read, stats, demo, and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson

from tests.conftest import RECORDINGS_DIR, need
from tests.integration.helpers import run, tombstone
from vault_store.catalog import Catalog
from vault_store.core.message import build_message

REPLAY = "0123456789abcdef0123456789abcdef"
DEMO_FILE = RECORDINGS_DIR / "rrweb" / "rrweb-player-demo-events.json"


def test_ingest_message_files_and_streams_then_read(home: dict[str, str], tmp_path: Path) -> None:
    single = tmp_path / "one.msgpack"
    single.write_bytes(
        build_message(project_id=3, replay_id=REPLAY, segment_id=0, body=b'[{"type":4}]')
    )
    stream = tmp_path / "many.msgpack"
    stream.write_bytes(
        b"".join(
            build_message(
                project_id=3,
                replay_id=REPLAY,
                segment_id=n,
                body=b'[{"type":3,"n":%d}]' % n,
                compress=n % 2 == 0,
            )
            for n in (2, 1, 2)
        )
    )
    result = run(home, "ingest", str(single), str(stream), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["messages"], summary["segments"], summary["duplicates"]) == (4, 3, 1)
    assert (summary["blobs_written"], summary["rejected"]) == (1, [])

    read = run(home, "read", "--project", "3", "--replay", REPLAY)
    assert read.returncode == 0, read.stderr
    assert orjson.loads(read.stdout) == [
        [{"type": 4}],
        [{"type": 3, "n": 1}],
        [{"type": 3, "n": 2}],
    ]
    window = run(home, "read", "--project", "3", "--replay", REPLAY, "--segments", "1:2")
    assert orjson.loads(window.stdout) == [[{"type": 3, "n": 1}]]


def test_rejected_messages_are_listed_and_exit_1(home: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "good.msgpack"
    good.write_bytes(build_message(project_id=3, replay_id=REPLAY, segment_id=0, body=b"[]"))
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(build_message(project_id=3, replay_id="nothex", segment_id=0, body=b"[]"))
    junk = tmp_path / "junk.json"
    junk.write_bytes(b"[1,2,3]")
    result = run(home, "ingest", str(good), str(bad), str(junk), "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["segments"] == 1, summary
    reasons = {Path(r["source"]).name: r["reason"] for r in summary["rejected"]}
    assert reasons["bad.msgpack"].startswith("replay_id:")
    assert "map" in reasons["junk.json"]


def test_rrweb_file_is_split_into_segments(home: dict[str, str], tmp_path: Path) -> None:
    need(DEMO_FILE.is_file(), f"{DEMO_FILE} missing")
    result = run(
        home, "ingest", "--rrweb", str(DEMO_FILE), "--project", "9", "--replay", REPLAY, "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["segments"] > 5
    output = tmp_path / "out.json"
    assert (
        run(home, "read", "--project", "9", "--replay", REPLAY, "-o", str(output)).returncode == 0
    )
    events = [e for segment in orjson.loads(output.read_bytes()) for e in segment]
    assert events == orjson.loads(DEMO_FILE.read_bytes())
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert stats["replays"] == 1 and stats["blobs"] == 1 and stats["segments_per_blob"] > 5


def test_rrweb_usage_errors_exit_2(home: dict[str, str], tmp_path: Path) -> None:
    recording = tmp_path / "r.json"
    recording.write_bytes(b'[{"type": 3, "timestamp": 1}]')
    assert run(home, "ingest", "--rrweb", str(recording), "--project", "1").returncode == 2
    bad_id = run(home, "ingest", "--rrweb", str(recording), "--project", "1", "--replay", "XYZ")
    assert bad_id.returncode == 2 and b"--replay" in bad_id.stderr
    assert run(home, "ingest").returncode == 2


def test_read_exit_codes(home: dict[str, str], tmp_path: Path) -> None:
    message = tmp_path / "m.msgpack"
    message.write_bytes(build_message(project_id=3, replay_id=REPLAY, segment_id=0, body=b"[1]"))
    assert run(home, "ingest", str(message)).returncode == 0

    missing = run(home, "read", "--project", "3", "--replay", "f" * 32)
    assert missing.returncode == 3 and b"not found" in missing.stderr and missing.stdout == b""
    other_project = run(home, "read", "--project", "4", "--replay", REPLAY)
    assert other_project.returncode == 3
    assert run(home, "read", "--project", "3", "--replay", "F" * 32).returncode == 2
    assert run(home, "read", "--project", str(2**63), "--replay", REPLAY).returncode == 2
    assert (
        run(home, "read", "--project", "3", "--replay", REPLAY, "--segments", "x").returncode == 2
    )

    catalog = Catalog(home["VAULT_STORE_DATABASE_URL"])
    tombstone(catalog, 3, "e" * 32)
    catalog.dispose()
    shredded = run(home, "read", "--project", "3", "--replay", "e" * 32)
    assert shredded.returncode == 4 and b"deleted" in shredded.stderr

    blob = next(Path(home["VAULT_STORE_HOME"], "blobs").rglob("*.vsb"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    output = tmp_path / "never.json"
    corrupt = run(home, "read", "--project", "3", "--replay", REPLAY, "-o", str(output))
    assert corrupt.returncode == 5 and b"segment 0" in corrupt.stderr
    assert not output.exists()


def test_unreachable_catalog_exits_6(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path),
        "VAULT_STORE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
    }
    result = run(env, "stats", "--json")
    assert result.returncode == 6
    assert json.loads(result.stdout)["error"] == "backend unavailable"


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "VAULT_STORE_HOME": str(tmp_path), "VAULT_STORE_FLUSH_MAX_BYTES": "many"}
    result = run(env, "stats")
    assert result.returncode == 2 and b"VAULT_STORE_FLUSH_MAX_BYTES" in result.stderr


def test_demo_reads_back_equal(home: dict[str, str]) -> None:
    need(RECORDINGS_DIR.is_dir(), "real recordings missing")
    result = run(home, "demo", "--copies", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["read_back_equal"] is True
    assert report["recordings_from"] == str(RECORDINGS_DIR)
    assert report["blobs_written"] < report["segments_unique"] / 20
    assert report["duplicates_ignored"] > 0
    assert report["read_ranged_gets"] >= 1


def test_help_lists_commands_and_exit_codes() -> None:
    result = run(dict(os.environ), "--help")
    assert result.returncode == 0
    for word in (b"demo", b"ingest", b"read", b"stats", b"migrate", b"Exit codes"):
        assert word in result.stdout
