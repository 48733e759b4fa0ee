"""The deletion commands as a real process: delete, deletion, overwrite, gc, expire, audit."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from sqlalchemy import text

from tests.builders import stream as message_stream
from tests.integration.helpers import run
from vault_store.catalog import Catalog

REPLAY = "0123456789abcdef0123456789abcdef"
OTHER = "f" * 32
BY = ("--by", "dpo@example.com", "--reason", "GDPR art. 17")


def _ingest(
    env: dict[str, str], tmp_path: Path, *, project: int = 3, user: str | None = None
) -> None:
    stream = tmp_path / f"p{project}.msgpack"
    stream.write_bytes(
        message_stream((REPLAY, OTHER), 3, project=project, email=user, email_of=REPLAY)
    )
    assert run(env, "ingest", str(stream)).returncode == 0


def test_delete_replay_with_overwrite_then_read_says_shredded(
    home: dict[str, str], tmp_path: Path
) -> None:
    _ingest(home, tmp_path)
    result = run(
        home, "delete", "replay", "--project", "3", "--replay", REPLAY, "--overwrite", *BY, "--json"
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["status"], status["rows_deleted"], status["overwrite_requested"]) == (
        "done",
        3,
        True,
    )
    assert status["overwrite_done_at"] is not None
    assert run(home, "read", "--project", "3", "--replay", REPLAY).returncode == 4
    assert orjson.loads(run(home, "read", "--project", "3", "--replay", OTHER).stdout) == [
        [0],
        [1],
        [2],
    ]
    shown = json.loads(run(home, "deletion", "status", status["id"], "--json").stdout)
    assert shown == status
    verify = run(home, "audit", "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["events"] == 4


def test_delete_user_finds_replays_by_identifier(home: dict[str, str], tmp_path: Path) -> None:
    _ingest(home, tmp_path, user="Carol@Example.com")
    result = run(
        home, "delete", "user", "--project", "3", "--user", "carol@example.com", *BY, "--json"
    )
    status = json.loads(result.stdout)
    assert (status["scope"], status["replays_deleted"], status["rows_deleted"]) == ("user", 1, 3)
    assert run(home, "read", "--project", "3", "--replay", REPLAY).returncode == 4
    assert run(home, "read", "--project", "3", "--replay", OTHER).returncode == 0


def test_deleting_what_is_not_held_is_recorded_and_says_so(
    home: dict[str, str], tmp_path: Path
) -> None:
    _ingest(home, tmp_path)
    never = run(home, "delete", "replay", "--project", "3", "--replay", "e" * 32, *BY, "--json")
    assert never.returncode == 3, never.stderr  # like `read` of a replay never stored
    recorded = json.loads(never.stdout)
    assert (recorded["status"], recorded["replays_deleted"], recorded["rows_deleted"]) == (
        "nothing_held",
        0,
        0,
    )
    first = json.loads(
        run(home, "delete", "replay", "--project", "3", "--replay", REPLAY, *BY, "--json").stdout
    )
    again = run(home, "delete", "replay", "--project", "3", "--replay", REPLAY, *BY)
    assert again.returncode == 4
    assert f"already deleted by deletion {first['id']}" in again.stderr.decode()
    for scope in (("user", "--user", "nobody@example.com"), ("project",)):
        result = run(home, "delete", *scope[:1], "--project", "9", *scope[1:], *BY)
        assert result.returncode == 0, result.stderr
        assert "nothing held" in result.stderr.decode()
    shown = json.loads(run(home, "deletion", "status", recorded["id"], "--json").stdout)
    assert shown["status"] == "nothing_held"
    assert run(home, "audit", "verify").returncode == 0


def test_async_delete_is_recorded_then_resumed(home: dict[str, str], tmp_path: Path) -> None:
    _ingest(home, tmp_path)
    _ingest(home, tmp_path, project=4)
    queued = json.loads(
        run(home, "delete", "project", "--project", "3", *BY, "--async", "--json").stdout
    )
    assert (queued["status"], queued["rows_deleted"], queued["replays_deleted"]) == (
        "pending",
        0,
        2,
    )
    assert queued["handed_to_workers"] is False  # no broker configured
    assert run(home, "read", "--project", "3", "--replay", OTHER).returncode == 4  # at once
    done = json.loads(run(home, "deletion", "resume", queued["id"], "--json").stdout)
    assert (done["status"], done["rows_deleted"]) == ("done", 6)
    assert run(home, "read", "--project", "4", "--replay", OTHER).returncode == 0
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert stats["rows"] == 6 and stats["dead_bytes"] > 0


def test_gc_expire_and_usage_errors(home: dict[str, str], tmp_path: Path) -> None:
    _ingest(home, tmp_path)
    assert run(home, "delete", "project", "--project", "3", *BY).returncode == 0
    planned = json.loads(run(home, "gc", "--dry-run", "--json").stdout)
    assert (len(planned["dead"]), planned["dry_run"]) == (1, True)
    assert len(list(Path(home["VAULT_STORE_HOME"], "blobs").rglob("*.vsb"))) == 1
    done = json.loads(run(home, "gc", "--json").stdout)
    assert len(done["dead"]) == 1
    assert list(Path(home["VAULT_STORE_HOME"], "blobs").rglob("*.vsb")) == []
    expired = json.loads(run(home, "expire", "--json").stdout)
    assert expired == {"rows_expired": 0, "blobs_deleted": 0, "bytes_deleted": 0}
    missing_reason = run(
        home, "delete", "replay", "--project", "3", "--replay", REPLAY, "--by", "x"
    )
    assert missing_reason.returncode == 2 and b"--reason" in missing_reason.stderr
    assert run(home, "deletion", "status", "nope").returncode == 2


def test_audit_verify_fails_on_tampering_and_report_is_written(
    home: dict[str, str], tmp_path: Path
) -> None:
    _ingest(home, tmp_path)
    assert run(home, "delete", "replay", "--project", "3", "--replay", REPLAY, *BY).returncode == 0
    report = tmp_path / "report.csv"
    made = run(
        home,
        "audit",
        "report",
        "--since",
        "2020-01-01",
        "--until",
        "2100-01-01",
        "--format",
        "csv",
        "-o",
        str(report),
    )
    assert made.returncode == 0, made.stderr
    assert b"1 request(s), 1 completed" in made.stdout
    assert report.read_text().count("\n") == 2
    assert (
        run(
            home,
            "audit",
            "report",
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
            "-o",
            str(report),
        ).returncode
        == 2
    )

    catalog = Catalog(home["VAULT_STORE_DATABASE_URL"])
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 1"))
    catalog.dispose()
    broken = run(home, "audit", "verify")
    # 5, integrity failure: 1 is "some input rejected" in the exit-code table.
    assert broken.returncode == 5 and b"event 1" in broken.stdout


def test_audit_report_checks_its_output_path_before_any_work_and_writes_atomically(
    home: dict[str, str], tmp_path: Path
) -> None:
    window = ("audit", "report", "--since", "2020-01-01", "--until", "2100-01-01")
    missing = Path("/nonexistent/dir/r.html")
    refused = run(home, *window, "-o", str(missing))
    assert refused.returncode == 2, refused.stderr
    assert str(missing.parent).encode() in refused.stderr and b"--output" in refused.stderr
    assert b"Traceback" not in refused.stderr
    # Refused before the vault was even opened: the (never used) home was not created.
    assert not Path(home["VAULT_STORE_HOME"]).exists()

    _ingest(home, tmp_path)
    report = tmp_path / "out" / "report.csv"
    report.parent.mkdir()
    report.write_text("old\n")
    made = run(home, *window, "--format", "csv", "-o", str(report))
    assert made.returncode == 0, made.stderr
    assert not report.read_text().startswith("old") and report.read_text().count("\n") == 1
    assert sorted(path.name for path in report.parent.iterdir()) == ["report.csv"]


def _stderr_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, bytes]:
    """`vault-store ARGS` with standard error on a pseudo-terminal (stdout a pipe): the exit
    code and what the terminal received."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "vault_store", *args],
            env={**env, "TERM": "xterm", "COLUMNS": "120"},
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        received = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
    return process.returncode, received


def test_gc_shows_progress_on_a_terminal_and_never_with_json(
    home: dict[str, str], tmp_path: Path
) -> None:
    _ingest(home, tmp_path)
    _ingest(home, tmp_path, project=4)
    assert run(home, "delete", "project", "--project", "3", *BY).returncode == 0
    code, shown = _stderr_on_a_terminal(home, "gc", "--json")
    assert code == 0 and b"dead blobs" not in shown
    assert run(home, "delete", "project", "--project", "4", *BY).returncode == 0
    code, shown = _stderr_on_a_terminal(home, "gc")
    assert code == 0 and b"dead blobs" in shown, shown
    # Off a terminal (stderr a pipe) nothing but errors goes there.
    assert run(home, "expire").stderr == b"" and run(home, "overwrite").stderr == b""
