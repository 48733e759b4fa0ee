"""A segment is one unit: stored byte for byte, first complete delivery wins whole, bad input
costs only itself (library, both parts settings, SQLite and PostgreSQL, and the CLI)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from tests.conftest import VaultFactory
from tests.integration.helpers import run
from vault_store.core.message import build_message, parse_message
from vault_store.core.parts import VIDEO

REPLAY = "ab" * 16
CRUMB = b'{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}'
FIRST = b'[ {"type":3,"data":{"x":1.50,"big":123456789012345678901234567890}},\n' + CRUMB + b" ]"
SECOND = b'[{"type":3,"data":{"x":2}},{"type":6,"data":{"plugin":"rrweb/network@1"}}]'


def _segment(body: bytes, segment_id: int = 0, video: bytes | None = None) -> bytes:
    message = msgpack.unpackb(
        build_message(project_id=1, replay_id=REPLAY, segment_id=segment_id, body=body)
    )
    message["replay_video"] = video
    return bytes(msgpack.packb(message))


@pytest.mark.parametrize(
    ("first_typed", "second_typed"), [(True, True), (True, False), (False, True)]
)
def test_a_later_delivery_of_a_segment_is_ignored_whole(
    make_vault: VaultFactory, first_typed: bool, second_typed: bool
) -> None:
    first = make_vault(typed_parts=first_typed)
    first.ingest_segment(parse_message(_segment(FIRST)))
    first.flush()
    # Another process, maybe with the other parts setting, gets the segment again, changed.
    second = make_vault(typed_parts=second_typed)
    second.ingest_segment(parse_message(_segment(SECOND)))
    (result,) = second.flush()
    assert (result.inserted, result.duplicates, result.blob_path) == (0, len(result.identities), "")
    assert first.read_segment(1, REPLAY, 0) == FIRST  # exactly the bytes sent, never mixed


def test_two_deliveries_in_one_buffer_keep_the_first_whole(make_vault: VaultFactory) -> None:
    vault = make_vault(typed_parts=True)
    vault.ingest_segment(parse_message(_segment(FIRST)))
    vault.ingest_segment(parse_message(_segment(SECOND)))  # dom + network: parts FIRST lacks
    vault.flush()
    assert vault.read_segment(1, REPLAY, 0) == FIRST
    assert vault.stats().rows == 2  # dom and console of the first delivery only


def test_video_is_sealed_as_its_own_part_and_kept_out_of_the_json(make_vault: VaultFactory) -> None:
    vault = make_vault(typed_parts=True)
    video = bytes(range(256)) * 40
    vault.ingest_segment(parse_message(_segment(FIRST, video=video)))
    vault.flush()
    assert vault.read_segment(1, REPLAY, 0) == FIRST
    assert vault.stats().rows == 3  # dom, console and video
    assert VIDEO == "video"


def test_cli_ingest_stores_the_good_files_around_bad_ones(
    home: dict[str, str], tmp_path: Path
) -> None:
    deep = b'[{"type":2,"data":{"node":' + b"[" * 5000 + b"]" * 5000 + b"}}," + CRUMB + b"]"
    files = {
        "a": _segment(FIRST, 0),
        "deep": _segment(deep, 1),
        "arraykey": b"\x81\x91\x01\x01",  # a map whose key is an array
        "surrogate": _segment(rb'[{"type":3,"data":{"t":"\ud83c"}}]', 2),
        "notjson": build_message(project_id=1, replay_id=REPLAY, segment_id=3, body=b"[1,]"),
        "c": _segment(SECOND, 4),
    }
    paths = []
    for name, data in files.items():
        path = tmp_path / f"{name}.msgpack"
        path.write_bytes(data)
        paths.append(str(path))
    done = run(home, "ingest", *paths, "--json")
    assert done.returncode == 1, done.stderr
    assert b"Traceback" not in done.stderr
    out = done.stdout.decode()
    assert '"segments": 4' in out
    assert "arraykey.msgpack" in out and "notjson.msgpack" in out
    assert "payload.body" in out  # the reason names the field
    read = run(home, "read", "--project", "1", "--replay", REPLAY, "--segments", "1:3")
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == b"[" + deep + b"," + rb'[{"type":3,"data":{"t":"\ud83c"}}]' + b"]"
