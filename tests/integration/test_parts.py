"""Typed parts end to end on SQLite and PostgreSQL: round trips, filters, fetched bytes, mixed rows."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import VaultFactory
from tests.integration.helpers import read_events, run
from vault_store import Catalog, ReadPolicy, Vault
from vault_store.api import create_app
from vault_store.core.message import Segment, build_message
from vault_store.core.parts import CONSOLE, DOM, NETWORK, TIMELINE, classify
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import Recording, as_messages, as_replays

CONSOLE_EVENT = {
    "type": 5,
    "timestamp": 0,
    "data": {"tag": "breadcrumb", "payload": {"category": "console", "message": "x" * 40}},
}
NETWORK_EVENT = {
    "type": 5,
    "timestamp": 0,
    "data": {
        "tag": "performanceSpan",
        "payload": {"op": "resource.fetch", "description": "/api/items"},
    },
}
PLUGIN_EVENT = {
    "type": 6,
    "timestamp": 0,
    "data": {"plugin": "rrweb/console@1", "payload": {"level": "warn"}},
}
CLICK_EVENT = {
    "type": 5,
    "timestamp": 0,
    "data": {"tag": "breadcrumb", "payload": {"category": "ui.click"}},
}


def _with_sentry_events(events: list[Any], seed: int) -> list[Any]:
    """A real recording with console breadcrumbs, network spans, plugin events and clicks added
    (the real recordings have none of the first three)."""
    generator = random.Random(seed)
    mixed = list(events)
    for extra in (CONSOLE_EVENT, NETWORK_EVENT, PLUGIN_EVENT, CLICK_EVENT) * 15:
        mixed.insert(generator.randrange(len(mixed) + 1), dict(extra))
    return mixed


def _store_segments(vault: Vault, replay: str, segments: list[list[Any]]) -> None:
    """Ingest each event list as segment 0, 1, ... of `replay` in project 4, then flush."""
    for n, events in enumerate(segments):
        vault.ingest_segment(
            Segment(
                project_id=4,
                replay_id=replay,
                segment_id=n,
                body=orjson.dumps(events),
                retention_days=30,
            )
        )
    vault.flush()


def test_every_real_recording_round_trips_with_typed_parts(
    make_vault: VaultFactory, recordings: list[Recording]
) -> None:
    vault = make_vault(typed_parts=True)
    replays = as_replays(recordings)
    for raw in as_messages(replays, seed=5, duplicate_fraction=0.05):
        vault.ingest_message(raw)
    vault.flush()
    reader = make_vault()  # reading needs no setting: rows say how they were stored
    for replay in replays:
        segments = read_events(reader, replay.project_id, replay.replay_id)
        assert len(segments) == len(replay.bodies), replay.recording.name
        assert [e for s in segments for e in s] == replay.events, replay.recording.name
    stats = reader.stats()
    assert stats.rows > stats.segments  # more than one part per segment


@pytest.fixture
def mixed_replay(
    make_vault: VaultFactory, recordings: list[Recording]
) -> tuple[Vault, str, list[list[Any]]]:
    (demo,) = [r for r in recordings if r.name == "rrweb-player-demo-events"]
    segments = [orjson.loads(b) for b in segment_bodies(_with_sentry_events(demo.events, seed=1))]
    vault = make_vault(typed_parts=True, read=ReadPolicy(gap_bytes=0))
    replay = "e" * 32
    _store_segments(vault, replay, segments)
    return vault, replay, segments


@pytest.mark.parametrize("wanted", [{CONSOLE}, {NETWORK}, {TIMELINE}, {DOM}, {CONSOLE, NETWORK}])
def test_part_filters_return_exactly_the_right_events(
    mixed_replay: tuple[Vault, str, list[list[Any]]], make_vault: VaultFactory, wanted: set[str]
) -> None:
    _, replay, segments = mixed_replay
    reader = make_vault(read=ReadPolicy(gap_bytes=0))
    got = orjson.loads(b"".join(reader.read_recording(4, replay, only=frozenset(wanted))))
    assert got == [[e for e in s if classify(e) in wanted] for s in segments]
    assert any(got)


def test_a_view_fetches_only_its_parts_in_one_coalesced_get(
    mixed_replay: tuple[Vault, str, list[list[Any]]], make_vault: VaultFactory
) -> None:
    _, replay, _segments = mixed_replay
    whole = make_vault(read=ReadPolicy(gap_bytes=0))
    b"".join(whole.read_recording(4, replay))
    console = make_vault(read=ReadPolicy(gap_bytes=0))
    b"".join(console.read_recording(4, replay, only=frozenset({CONSOLE})))
    assert console.read_counters().gets == 1  # console frames are contiguous in the blob
    assert console.read_counters().bytes_fetched * 10 < whole.read_counters().bytes_fetched


def test_rows_stored_whole_and_typed_coexist(make_vault: VaultFactory) -> None:
    old, new = make_vault(typed_parts=False), make_vault(typed_parts=True)
    replay = "f" * 32
    events = [[{"type": 3, "data": {"n": n}}, dict(CONSOLE_EVENT)] for n in range(4)]
    for n, segment in enumerate(events):
        writer = old if n % 2 == 0 else new  # one replay, written by both kinds of worker
        writer.ingest_segment(
            Segment(
                project_id=4,
                replay_id=replay,
                segment_id=n,
                body=orjson.dumps(segment),
                retention_days=30,
            )
        )
    old.flush()
    new.flush()
    reader = make_vault()
    assert read_events(reader, 4, replay) == events
    console = orjson.loads(b"".join(reader.read_recording(4, replay, only=frozenset({CONSOLE}))))
    assert console == [[CONSOLE_EVENT]] * 4
    with reader._catalog.connection("test") as conn:
        from sqlalchemy import text

        parts = sorted(
            p for (p,) in conn.execute(text("SELECT DISTINCT part FROM recording_byte_range"))
        )
    assert parts == ["console", "dom", "recording"]


def test_cli_and_api_take_a_part_filter(home: dict[str, str], tmp_path: Path) -> None:
    replay = "0123456789abcdef0123456789abcdef"
    segments = [
        [{"type": 3, "data": {"n": n}}, dict(CONSOLE_EVENT), dict(NETWORK_EVENT)] for n in range(3)
    ]
    messages = tmp_path / "m.msgpack"
    messages.write_bytes(
        b"".join(
            build_message(project_id=6, replay_id=replay, segment_id=n, body=orjson.dumps(s))
            for n, s in enumerate(segments)
        )
    )
    assert run(home, "ingest", str(messages)).returncode == 0
    read = run(home, "read", "--project", "6", "--replay", replay, "--part", "console,network")
    assert orjson.loads(read.stdout) == [[CONSOLE_EVENT, NETWORK_EVENT]] * 3
    bad = run(home, "read", "--project", "6", "--replay", replay, "--part", "video")
    assert bad.returncode == 2 and b"--part" in bad.stderr
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert (stats["segments"], stats["rows"]) == (3, 9)  # typed parts are the default
    assert stats["segments_per_blob"] == 3.0  # segments, not rows

    vault = Vault.from_settings(__import__("vault_store").Settings.from_env(home))
    token = vault.issue_token([6], ["read"]).token
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(lambda: vault)) as client:
        assert (
            client.get(
                f"/v1/projects/6/replays/{replay}/recording",
                params={"part": "network"},
                headers=auth,
            ).json()
            == [[NETWORK_EVENT]] * 3
        )
        assert (
            client.get(
                f"/v1/projects/6/replays/{replay}/segments/1",
                params={"part": "dom,console"},
                headers=auth,
            ).json()
            == segments[1][:2]
        )
        listed = client.get(f"/v1/projects/6/replays/{replay}/segments", headers=auth).json()
        assert listed["segments"][0]["parts"] == ["console", "dom", "network"]
        bad_part = client.get(
            f"/v1/projects/6/replays/{replay}/recording", params={"part": "video"}, headers=auth
        )
        assert bad_part.status_code == 400 and "part" in bad_part.json()["message"]
    vault.close()


def test_api_pages_count_every_segment_under_a_part_filter(make_vault: VaultFactory) -> None:
    vault = make_vault(typed_parts=True)
    replay = "d" * 32
    bodies = [
        [{"type": 3, "data": {"n": 0}}],
        [{"type": 3, "data": {"n": 1}}],
        [dict(CONSOLE_EVENT)],
    ]
    _store_segments(vault, replay, bodies)
    token = vault.issue_token([4], ["read"]).token
    auth = {"Authorization": f"Bearer {token}"}
    pages: list[Any] = []
    cursor: int | None = 0
    with TestClient(create_app(lambda: vault)) as client:
        while cursor is not None:
            reply = client.get(
                f"/v1/projects/4/replays/{replay}/recording",
                params={"part": "console", "per_page": 1, "cursor": cursor},
                headers=auth,
            )
            pages.append(reply.json())
            next_cursor = reply.headers.get("x-next-cursor")
            cursor = int(next_cursor) if next_cursor else None
    assert pages == [[[]], [[]], [[CONSOLE_EVENT]]]  # one segment per page, empty ones included


@pytest.mark.parametrize("page_segments", [1, 2, 3, 50])
@pytest.mark.parametrize("rich_first", [False, True])
def test_pages_read_every_segment_when_segments_have_more_parts_than_guessed(
    make_vault: VaultFactory, page_segments: int, rich_first: bool
) -> None:
    # Pages ask only for about the rows they need (two parts per segment at first, then what
    # the last page had): a segment with more parts must shorten its page, never lose rows.
    dom = {"type": 3, "timestamp": 0, "data": {"source": 1}}
    rich = [[dom, CONSOLE_EVENT, NETWORK_EVENT, CLICK_EVENT]] * (60 if rich_first else 4)
    shapes = ([] if rich_first else [[dom]] * 5) + rich + [[dom]] * 3
    vault = make_vault(typed_parts=True)
    replay = "f" * 32
    _store_segments(vault, replay, shapes)
    reader = make_vault(read=ReadPolicy(page_segments=page_segments))
    assert orjson.loads(b"".join(reader.read_recording(4, replay))) == shapes
    wanted = frozenset({CONSOLE})
    got = orjson.loads(b"".join(reader.read_recording(4, replay, only=wanted)))
    assert got == [[e for e in s if classify(e) in wanted] for s in shapes]


def test_later_pages_share_a_range_query(
    make_vault: VaultFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each range query costs its statement and bucket lookup: after the first page, one query
    # fetches the rows of several pages, which are cut into pages without asking again.
    shapes = [
        [{"type": 3, "timestamp": n, "data": {"source": 1}}, CONSOLE_EVENT] for n in range(41)
    ]
    vault = make_vault(typed_parts=True)
    replay = "e" * 32
    _store_segments(vault, replay, shapes)
    queries = []
    original = Catalog.replay_ranges

    def counted(catalog: Catalog, *args: Any, **kwargs: Any) -> Any:
        queries.append(kwargs.get("min_segment"))
        return original(catalog, *args, **kwargs)

    monkeypatch.setattr(Catalog, "replay_ranges", counted)
    reader = make_vault(read=ReadPolicy(page_segments=2))
    assert orjson.loads(b"".join(reader.read_recording(4, replay))) == shapes
    # 39 segments after the first page of 2: 20 pages, rows of 16 pages per query.
    assert len(queries) <= 3
