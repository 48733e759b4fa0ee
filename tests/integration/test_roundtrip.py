"""End to end on SQLite and PostgreSQL: real recordings in as messages, out exactly, cheaply."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson
import pytest

from tests.conftest import RECORDINGS_DIR, VaultFactory, need
from tests.integration.helpers import read_events
from vault_store import Catalog, FlushPolicy, ReadPolicy, ReplayNotFound
from vault_store.core import codec
from vault_store.core.message import Segment, build_message
from vault_store.core.rrweb import segment_bodies
from vault_store.services.samples import Recording, as_messages, as_replays


def test_every_recording_round_trips_through_two_workers(
    make_vault: VaultFactory, recordings: list[Recording]
) -> None:
    """Shuffled, 5% redelivered, spread over two ingest processes with their own keys."""
    replays = as_replays(recordings)
    messages = as_messages(replays, seed=3, duplicate_fraction=0.05)
    workers = [make_vault(flush=FlushPolicy(max_segments=150)) for _ in range(2)]
    for worker, raw in zip(itertools.cycle(workers), messages, strict=False):
        worker.ingest_message(raw)
    for worker in workers:
        worker.flush()

    reader = make_vault()
    for replay in replays:
        segments = read_events(reader, replay.project_id, replay.replay_id)
        assert len(segments) == len(replay.bodies), replay.recording.name
        assert [event for segment in segments for event in segment] == replay.events, (
            replay.recording.name
        )
    stats = reader.stats()
    assert stats.segments == sum(len(r.bodies) for r in replays)
    assert stats.replays == len(replays)
    assert stats.blobs >= 2


def test_reading_in_small_pages_gives_the_same_recording(
    make_vault: VaultFactory, recordings: list[Recording]
) -> None:
    (replay,) = [r for r in as_replays(recordings) if r.recording.name == "docs"]
    writer = make_vault()
    for raw in as_messages([replay]):
        writer.ingest_message(raw)
    writer.flush()
    whole = read_events(make_vault(), replay.project_id, replay.replay_id)
    paged = read_events(
        make_vault(read=ReadPolicy(page_segments=7)), replay.project_id, replay.replay_id
    )
    assert paged == whole
    assert [e for s in paged for e in s] == replay.events


def test_segment_window_and_gaps_in_segment_ids(make_vault: VaultFactory) -> None:
    vault = make_vault()
    replay = "ab" * 16
    for segment_id in (0, 1, 4, 5, 9):  # ids may have gaps
        body = b'[{"type":3,"n":%d}]' % segment_id
        vault.ingest_segment(
            Segment(
                project_id=1, replay_id=replay, segment_id=segment_id, body=body, retention_days=30
            )
        )
    vault.flush()
    window = b"".join(vault.read_recording(1, replay, start=1, stop=6))
    assert window == b'[[{"type":3,"n":1}],[{"type":3,"n":4}],[{"type":3,"n":5}]]'
    assert b"".join(vault.read_recording(1, replay, start=6, stop=9)) == b"[]"
    with pytest.raises(ReplayNotFound):
        b"".join(vault.read_recording(1, "cd" * 16))
    with pytest.raises(ReplayNotFound):
        b"".join(vault.read_recording(2, replay))  # another project's replay does not exist


def test_the_first_page_is_sent_while_later_pages_are_planned(
    make_vault: VaultFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The range queries that plan later pages run on a page thread, not on the caller's: the
    # first page does not wait for them (here, the later query waits for the first page).
    vault = make_vault()
    replay = "9a" * 16
    for segment_id in range(6):
        body = b'[{"type":3,"n":%d}]' % segment_id
        vault.ingest_segment(
            Segment(
                project_id=1, replay_id=replay, segment_id=segment_id, body=body, retention_days=30
            )
        )
    vault.flush()
    first_sent = threading.Event()
    original = Catalog.replay_ranges

    def after_first_page(catalog: Catalog, *args: Any, **kwargs: Any) -> Any:
        assert first_sent.wait(timeout=10), "the first page waited for the later pages' query"
        return original(catalog, *args, **kwargs)

    monkeypatch.setattr(Catalog, "replay_ranges", after_first_page)
    chunks = make_vault(read=ReadPolicy(page_segments=2)).read_recording(1, replay)
    assert next(chunks) == b"["
    assert next(chunks) == b'[{"type":3,"n":0}],[{"type":3,"n":1}]'
    first_sent.set()
    rest = b"".join(chunks)
    assert rest == b',[{"type":3,"n":2}],[{"type":3,"n":3}],[{"type":3,"n":4}],[{"type":3,"n":5}]]'


def _ingest_interleaved(vault_factory: VaultFactory) -> tuple[str, str]:
    """Replays X and Y, 20 segments each in two flushes: X's frames sit in two blobs."""
    writer = vault_factory()
    x, y = "1" * 32, "2" * 32
    for half in (range(0, 10), range(10, 20)):
        for segment_id in half:
            for replay in (x, y):
                body = b'[{"type":3,"data":{"s":%d,"pad":"%s"}}]' % (segment_id, b"p" * 3000)
                writer.ingest_segment(
                    Segment(
                        project_id=1,
                        replay_id=replay,
                        segment_id=segment_id,
                        body=body,
                        retention_days=30,
                    )
                )
        writer.flush()
    return x, y


def test_ranges_of_one_replay_coalesce_into_one_get_per_blob(make_vault: VaultFactory) -> None:
    x, _ = _ingest_interleaved(make_vault)
    reader = make_vault(read=ReadPolicy(gap_bytes=0))
    assert len(read_events(reader, 1, x)) == 20
    assert reader.read_counters().gets == 2
    assert reader.read_counters().unwraps == 1


def test_without_coalescing_each_range_is_its_own_get(make_vault: VaultFactory) -> None:
    x, _ = _ingest_interleaved(make_vault)
    reader = make_vault(read=ReadPolicy(gap_bytes=0, max_fetch_bytes=1))
    assert len(read_events(reader, 1, x)) == 20
    assert reader.read_counters().gets == 20


def test_out_of_order_and_duplicate_delivery_across_flushes(make_vault: VaultFactory) -> None:
    vault = make_vault(flush=FlushPolicy(max_segments=3))
    replay = "ef" * 16
    order = [5, 3, 0, 5, 1, 4, 2, 0, 3, 5]
    for segment_id in order:
        body = b'[{"type":3,"segment":%d}]' % segment_id
        vault.ingest_segment(
            Segment(
                project_id=1, replay_id=replay, segment_id=segment_id, body=body, retention_days=30
            )
        )
    vault.flush()
    segments = read_events(vault, 1, replay)
    assert [s[0]["segment"] for s in segments] == [0, 1, 2, 3, 4, 5]
    stats = vault.stats()
    assert stats.rows == 6
    # Redelivered segments already stored are not even uploaded: no blob of duplicates.
    assert stats.dead_bytes == 0


def _fragment_recordings() -> list[tuple[str, list[Any]]]:
    """rrweb's 49 integration-test recordings and Sentry's masked snapshot (made valid JSON)."""
    need(RECORDINGS_DIR.is_dir(), f"real recordings not found at {RECORDINGS_DIR}")
    suite = orjson.loads(
        (RECORDINGS_DIR / "rrweb" / "rrweb-integration-test-recordings.json").read_bytes()
    )
    fragments = [(name, events) for name, events in suite.items()]
    sentry = (
        RECORDINGS_DIR / "sentry-javascript" / "privacyDefault-privacy-chromium.json.txt"
    ).read_bytes()
    fragments.append(
        (
            "sentry privacy snapshot",
            [orjson.loads(sentry.replace(b"[timestamp]", b"1700000000000"))],
        )
    )
    return fragments


def test_fragment_recordings_round_trip(make_vault: VaultFactory) -> None:
    fragments = _fragment_recordings()
    assert len(fragments) == 50
    vault = make_vault()
    sent = []
    for index, (name, events) in enumerate(fragments):
        replay = f"{index:032x}"
        bodies = segment_bodies(events)
        for segment_id, body in enumerate(bodies):
            vault.ingest_message(
                build_message(
                    project_id=5,
                    replay_id=replay,
                    segment_id=segment_id,
                    body=body,
                    compress=index % 2 == 0,
                )
            )
        sent.append((name, replay, events))
    vault.flush()
    for name, replay, events in sent:
        assert [e for s in read_events(vault, 5, replay) for e in s] == events, name


def test_forgetting_keys_makes_the_next_read_unwrap_again(make_vault: VaultFactory) -> None:
    vault = make_vault()
    for replay in ("1" * 32, "2" * 32):
        vault.ingest_segment(
            Segment(project_id=1, replay_id=replay, segment_id=0, body=b"[1]", retention_days=30)
        )
    vault.flush()
    read_events(vault, 1, "1" * 32)
    read_events(vault, 1, "2" * 32)
    assert vault.read_counters().unwraps == 2
    assert vault.forget_keys(1, "1" * 32) == 2  # its read key and its sealing key
    read_events(vault, 1, "1" * 32)
    read_events(vault, 1, "2" * 32)
    assert vault.read_counters().unwraps == 3
    assert vault.forget_keys(1) == 3  # what remains of project 1: two read keys, one sealing key
    assert vault.cached_keys() == 0


def test_pages_of_whole_segments_are_decompressed_into_their_chunk(
    make_vault: VaultFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment that is one frame read as stored is decompressed straight into its page's
    chunk (no bytes object for it, no join); other segments are merged as before, in the same
    chunk, and the chunks are the same bytes either way."""
    replay = "ef" * 16
    bodies = [b'[{"type":3,"n":%d}]' % n for n in range(11)]
    # Leading whitespace: the body is still returned as stored (the page is built, then merged).
    bodies[2] = b' \n[{"type":3,"n":2}]'
    # Two parts (dom and console): this segment's page is opened and merged per segment.
    bodies[9] = (
        b'[{"type":3,"n":9},{"type":5,"data":{"tag":"breadcrumb","payload":{"category":"console"}}}]'
    )
    writer = make_vault(typed_parts=True)
    for segment_id, body in enumerate(bodies):
        writer.ingest_segment(
            Segment(
                project_id=1, replay_id=replay, segment_id=segment_id, body=body, retention_days=30
            )
        )
    writer.flush()
    decompressed: list[int] = []
    whole = codec.decompress

    def counted(data: bytes, *, max_size: int = codec.MAX_SEGMENT_BYTES) -> bytes:
        decompressed.append(len(data))
        return whole(data, max_size=max_size)

    monkeypatch.setattr(codec, "decompress", counted)
    chunks = list(make_vault(read=ReadPolicy(page_segments=4)).read_recording(1, replay))
    assert chunks == [
        b"[",
        b",".join(bodies[0:4]),
        b"," + b",".join(bodies[4:8]),
        b"," + b",".join(bodies[8:11]),
        b"]",
    ]
    # Only the two-part segment's frames made a bytes object each (to be merged).
    assert len(decompressed) == 2
