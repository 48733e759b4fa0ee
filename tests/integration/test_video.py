"""Mobile replay video: read back byte for byte (library and CLI), counted in stats, and gone
with its replay on delete, forced overwrite and expiry (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
from sqlalchemy import select

from tests.conftest import VaultFactory
from tests.integration.helpers import run
from vault_store.catalog.models import RecordingByteRange
from vault_store.catalog.records import Scope
from vault_store.core.message import build_message, parse_message
from vault_store.errors import ReplayNotFound, ReplayShredded
from vault_store.services.retention import expire
from vault_store.vault import Vault

REPLAY = "cd" * 16
OTHER = "ef" * 16
BODY = b'[{"type":4,"data":{"href":"app://main"}},{"type":3,"data":{"x":1.50}}]'
# Not JSON, not text: what an MP4 looks like to us (seeded, so a failure can be replayed).
VIDEO = random.Random(14).randbytes(50_000)


def _message(
    replay_id: str, segment_id: int, video: bytes | None, *, retention_days: int = 90
) -> bytes:
    message = msgpack.unpackb(
        build_message(
            project_id=1,
            replay_id=replay_id,
            segment_id=segment_id,
            body=BODY,
            retention_days=retention_days,
        )
    )
    message["replay_video"] = video
    return bytes(msgpack.packb(message))


def _store(vault: Vault, *messages: bytes) -> None:
    for raw in messages:
        vault.ingest_segment(parse_message(raw))
    vault.flush()


def _video_ranges(vault: Vault) -> list[tuple[str, int, int]]:
    rbr = RecordingByteRange
    with vault._catalog.engine.connect() as conn:
        rows = conn.execute(
            select(rbr.blob_path, rbr.start, rbr.stop).where(rbr.part == "video")
        ).all()
    return [(path, start, stop) for path, start, stop in rows]


@pytest.mark.parametrize("typed_parts", [True, False])
def test_video_reads_back_exactly_and_a_segment_without_one_reads_none(
    make_vault: VaultFactory, typed_parts: bool
) -> None:
    vault = make_vault(typed_parts=typed_parts)
    _store(vault, _message(REPLAY, 0, VIDEO), _message(REPLAY, 1, None))
    assert vault.read_video(1, REPLAY, 0) == VIDEO
    assert vault.read_video(1, REPLAY, 1) is None  # the segment exists, without video
    assert vault.read_video(1, REPLAY, 7) is None  # no such segment in a replay that exists
    assert vault.read_segment(1, REPLAY, 0) == BODY  # the JSON holds no video bytes
    with pytest.raises(ReplayNotFound):
        vault.read_video(1, OTHER, 0)
    totals = vault.stats()
    assert totals.video_parts == 1
    (video_range,) = _video_ranges(vault)
    assert totals.video_bytes == video_range[2] - video_range[1] > len(VIDEO)  # sealed: + tag


def test_a_delete_takes_the_video_with_its_replay(make_vault: VaultFactory) -> None:
    vault = make_vault()
    _store(vault, _message(REPLAY, 0, VIDEO), _message(OTHER, 0, VIDEO))
    vault.shred(Scope.REPLAY, 1, replay_id=REPLAY, requested_by="dpo", reason="GDPR")
    with pytest.raises(ReplayShredded):
        vault.read_video(1, REPLAY, 0)
    assert vault.read_video(1, OTHER, 0) == VIDEO  # packed in the same blob, untouched
    assert vault.stats().video_parts == 1


def test_a_forced_overwrite_zeroes_the_video_bytes(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    _store(vault, _message(REPLAY, 0, VIDEO), _message(OTHER, 0, None))
    ((path, start, stop),) = _video_ranges(vault)
    blob = tmp_path / "blobs" / path
    assert blob.read_bytes()[start:stop] != bytes(stop - start)
    vault.shred(
        Scope.REPLAY, 1, replay_id=REPLAY, overwrite=True, requested_by="dpo", reason="court"
    )
    assert blob.read_bytes()[start:stop] == bytes(stop - start)
    assert vault.read_segment(1, OTHER, 0) == BODY


def test_expiry_removes_the_video_with_its_replay(make_vault: VaultFactory, tmp_path: Path) -> None:
    vault = make_vault()
    _store(vault, _message(REPLAY, 0, VIDEO, retention_days=1), _message(OTHER, 0, VIDEO))
    later = datetime.now(UTC) + timedelta(days=2)
    result = expire(vault._catalog, vault._blob_store, now=later)
    assert result.rows_expired == 2  # REPLAY's dom part (all its events) and its video
    with pytest.raises(ReplayNotFound):
        vault.read_video(1, REPLAY, 0)
    assert vault.read_video(1, OTHER, 0) == VIDEO
    assert [r[0].split("/")[0] for r in _video_ranges(vault)] == ["r90d"]


def test_cli_read_video_writes_the_bytes_and_exits_3_without_one(
    home: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "in.msgpack"
    source.write_bytes(_message(REPLAY, 0, VIDEO) + _message(REPLAY, 1, None))
    assert run(home, "ingest", str(source)).returncode == 0
    target = tmp_path / "video.mp4"
    done = run(
        home, "read", "--project", "1", "--replay", REPLAY, "--video", "0", "-o", str(target)
    )
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == VIDEO
    to_stdout = run(home, "read", "--project", "1", "--replay", REPLAY, "--video", "0")
    assert to_stdout.stdout == VIDEO
    missing = tmp_path / "none.mp4"
    none = run(
        home, "read", "--project", "1", "--replay", REPLAY, "--video", "1", "-o", str(missing)
    )
    assert none.returncode == 3 and b"no video" in none.stderr
    assert not missing.exists()  # a failed read leaves no file
    assert run(home, "read", "--project", "1", "--replay", OTHER, "--video", "0").returncode == 3
    mixed = run(home, "read", "--project", "1", "--replay", REPLAY, "--video", "0", "--part", "dom")
    assert mixed.returncode == 2 and b"--video" in mixed.stderr
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert stats["video_parts"] == 1 and stats["video_bytes"] > len(VIDEO)
