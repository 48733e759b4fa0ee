"""The catalog on SQLite and the real PostgreSQL: inserts, duplicates, tombstones, pages, stats."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from sqlalchemy import delete, insert, select

from tests.integration.helpers import after_each_driver_statement, tombstone, write_tombstone
from vault_store.catalog import BlobRecord, Catalog, RangeRecord, ReplayState
from vault_store.catalog.models import Blob, RecordingByteRange, Replay
from vault_store.errors import BackendUnavailable, ConfigError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REPLAY = "0123456789abcdef0123456789abcdef"


def _row(
    segment: int,
    *,
    replay: str = REPLAY,
    project: int = 1,
    path: str = "b1",
    at: int = 0,
    size: int = 100,
    kek: str = "local-kms:/k#v1",
) -> RangeRecord:
    return RangeRecord(
        project_id=project,
        replay_id=replay,
        segment_id=segment,
        part="recording",
        blob_path=path,
        start=at,
        stop=at + size,
        wrapped_dek=b"\x00\\\t\n" + bytes(range(56)),  # bytes that COPY must escape
        kek=kek,
        key_check=bytes(range(32)),
        created_at=NOW,
        expires_at=NOW + timedelta(days=90),
    )


def _blob(path: str, rows: list[RangeRecord]) -> BlobRecord:
    return BlobRecord(
        path=path,
        size=sum(r.size for r in rows),
        frame_count=len(rows),
        retention_days=90,
        created_at=NOW,
        expires_at=NOW + timedelta(days=90),
    )


def test_insert_and_read_back_every_column(catalog: Catalog) -> None:
    rows = [_row(n, at=n * 100, kek="tab\there\\and\nnewline") for n in range(3)]
    outcome = catalog.insert_blob(_blob("b1", rows), rows)
    assert (outcome.inserted, outcome.duplicates, outcome.live_bytes) == (3, 0, 300)
    assert catalog.replay_ranges(1, REPLAY) == rows


def test_duplicates_are_ignored_first_write_wins(catalog: Catalog) -> None:
    first = [_row(n, path="b1", at=n * 100) for n in range(3)]
    catalog.insert_blob(_blob("b1", first), first)
    second = [_row(n, path="b2", at=n * 50, size=50) for n in range(2, 5)]
    outcome = catalog.insert_blob(_blob("b2", second), second)
    assert (outcome.inserted, outcome.duplicates) == (2, 1)
    assert outcome.live_bytes == 100  # only segments 3 and 4 count as live in b2
    stored = catalog.replay_ranges(1, REPLAY)
    assert [(r.segment_id, r.blob_path) for r in stored] == [
        (0, "b1"),
        (1, "b1"),
        (2, "b1"),
        (3, "b2"),
        (4, "b2"),
    ]
    stats = catalog.stats()
    assert (stats.rows, stats.blobs, stats.bytes_stored, stats.live_bytes) == (5, 2, 450, 400)
    assert stats.dead_bytes == 50


def test_duplicates_inside_one_batch_keep_the_first(catalog: Catalog) -> None:
    rows = [_row(0, at=0), _row(0, at=100), _row(1, at=200)]
    outcome = catalog.insert_blob(_blob("b1", rows), rows)
    assert (outcome.inserted, outcome.duplicates) == (2, 1)
    assert [r.start for r in catalog.replay_ranges(1, REPLAY)] == [0, 200]


def test_rows_of_tombstoned_replays_and_projects_are_dropped(catalog: Catalog) -> None:
    dead_replay, live_replay = "a" * 32, "b" * 32
    tombstone(catalog, 1, dead_replay)
    tombstone(catalog, 2, None)
    rows = [
        _row(0, replay=dead_replay),
        _row(0, replay=live_replay, at=100),
        _row(0, project=2, replay=live_replay, at=200),
    ]
    outcome = catalog.insert_blob(_blob("b1", rows), rows)
    assert (outcome.inserted, outcome.dropped_deleted) == (1, 2)
    with catalog.connection("test") as conn:  # not only hidden by the tombstone: not there
        stored = conn.execute(
            select(RecordingByteRange.project_id, RecordingByteRange.replay_id)
        ).all()
    assert [tuple(row) for row in stored] == [(1, live_replay)]
    assert catalog.replay_state(1, dead_replay) is ReplayState.SHREDDED
    assert catalog.replay_state(2, "c" * 32) is ReplayState.SHREDDED
    assert catalog.replay_state(1, live_replay) is ReplayState.STORED
    assert catalog.replay_state(1, "c" * 32) is ReplayState.UNKNOWN
    assert catalog.replay_page(1, dead_replay) == (ReplayState.SHREDDED, [])
    assert catalog.replay_page(1, "c" * 32) == (ReplayState.UNKNOWN, [])
    state, page = catalog.replay_page(1, live_replay)
    assert state is ReplayState.STORED and [r.segment_id for r in page] == [0]
    # Read past its end, a stored replay is still STORED, with no rows.
    assert catalog.replay_page(1, live_replay, min_segment=1) == (ReplayState.STORED, [])
    assert catalog.replay_page(1, live_replay, stop_segment=0) == (ReplayState.STORED, [])


def test_tombstoned_answers_one_replay_as_it_answers_many(catalog: Catalog) -> None:
    # One replay is asked on a driver connection of its own (ingest asks before every new
    # key); the answer must be the same as in a batch, on each database.
    dead_replay, live_replay = "a" * 32, "b" * 32
    tombstone(catalog, 1, dead_replay)
    tombstone(catalog, 2, None)
    pairs = [(1, dead_replay), (1, live_replay), (2, live_replay), (3, dead_replay)]
    dead = {(1, dead_replay), (2, live_replay)}
    assert catalog.tombstoned(set(pairs)) == dead
    for pair in pairs:
        assert catalog.tombstoned({pair}) == ({pair} & dead)


def test_cursor_pagination_in_segment_order(catalog: Catalog) -> None:
    rows = [_row(n, at=n * 100) for n in (7, 3, 11, 0, 5, 9, 1)]
    catalog.insert_blob(_blob("b1", rows), rows)
    pages, after = [], None
    while True:
        page = catalog.replay_ranges(1, REPLAY, after_segment=after, limit=3)
        if not page:
            break
        pages.append([r.segment_id for r in page])
        after = page[-1].segment_id
    assert pages == [[0, 1, 3], [5, 7, 9], [11]]
    window = catalog.replay_ranges(1, REPLAY, min_segment=3, stop_segment=9)
    assert [r.segment_id for r in window] == [3, 5, 7]


def test_ranges_of_some_parts_only(catalog: Catalog) -> None:
    rows = [
        replace(_row(n // 3, at=n * 100), part=part)
        for n, part in enumerate(["console", "network", "recording"] * 3)
    ]
    catalog.insert_blob(_blob("b1", rows), rows)
    network = catalog.replay_ranges(1, REPLAY, parts={"network"})
    assert [(r.segment_id, r.part) for r in network] == [
        (0, "network"),
        (1, "network"),
        (2, "network"),
    ]
    both = catalog.replay_ranges(1, REPLAY, parts=["recording", "console"], min_segment=1, limit=3)
    assert [(r.segment_id, r.part) for r in both] == [
        (1, "console"),
        (1, "recording"),
        (2, "console"),
    ]
    assert catalog.replay_ranges(1, REPLAY, parts=()) == []


def test_replays_and_projects_do_not_mix(catalog: Catalog) -> None:
    rows = [_row(0), _row(0, project=2, at=100), _row(0, replay="f" * 32, at=200)]
    catalog.insert_blob(_blob("b1", rows), rows)
    assert [r.start for r in catalog.replay_ranges(1, REPLAY)] == [0]
    assert [r.start for r in catalog.replay_ranges(2, REPLAY)] == [100]
    assert catalog.stats().replays == 3


def test_migrate_is_idempotent(catalog: Catalog) -> None:
    catalog.migrate()
    assert catalog.stats().rows == 0


def test_unreachable_database_is_backend_unavailable() -> None:
    catalog = Catalog("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(BackendUnavailable) as caught:
        catalog.stats()
    assert caught.value.backend == "catalog"


@pytest.mark.parametrize("url", ["mysql://x@h/db", "not a url"])
def test_unsupported_catalog_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        Catalog(url)


def test_library_operations_map_database_outages_too() -> None:
    from vault_store import Scope
    from vault_store.services.shredder import Shredder

    catalog = Catalog("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(BackendUnavailable) as caught:
        Shredder(catalog).request(Scope.PROJECT, 1, requested_by="a", reason="b")
    assert caught.value.op == "shred"


@pytest.mark.postgres
def test_a_connection_dropped_mid_read_is_unavailable_and_logs_no_traceback(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the read's session between two statements: the read is retryable
    (BackendUnavailable), the dead connection is not pooled again (the next read works), and
    nothing is logged (the pool's rollback of a dead connection logged the driver's traceback)."""
    catalog = Catalog(postgres_url)
    catalog.migrate()
    rows = [_row(n, at=n * 100) for n in range(3)]
    catalog.insert_blob(_blob("b1", rows), rows)
    statements: list[str] = []

    def end_the_session_after_the_first(statement: str, _parameters: Any, driver: Any) -> None:
        statements.append(statement)
        if len(statements) == 1:
            with psycopg2.connect(postgres_url) as admin, admin.cursor() as other:
                other.execute("SELECT pg_terminate_backend(%s)", (driver.get_backend_pid(),))

    with (
        after_each_driver_statement(catalog, end_the_session_after_the_first),
        caplog.at_level(logging.DEBUG),
        pytest.raises(BackendUnavailable) as caught,
    ):
        catalog.replay_page(1, REPLAY, limit=2)
    assert caught.value.op == "read"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    state, page = catalog.replay_page(1, REPLAY, limit=2)
    assert state is ReplayState.STORED and len(page) == 2
    catalog.dispose()


@pytest.mark.parametrize("call", ["replay_page", "replay_page_at"])
def test_a_replay_shredded_while_its_page_is_read_reads_as_shredded(
    catalog: Catalog, call: str
) -> None:
    """A shred commits right after the read's tombstone check, taking the rows and the replay's
    row: on PostgreSQL, where each statement reads its own snapshot, the read found nothing and
    said UNKNOWN (404) for a replay that is SHREDDED (410)."""
    rows = [_row(n, at=n * 100) for n in range(3)]
    catalog.insert_blob(_blob("b1", rows), rows)
    shredded: list[bool] = []

    def shred() -> None:
        with catalog.engine.begin() as conn:
            write_tombstone(conn, 1, REPLAY)
            conn.execute(delete(RecordingByteRange).where(RecordingByteRange.replay_id == REPLAY))
            conn.execute(delete(Replay).where(Replay.replay_id == REPLAY))
        shredded.append(True)

    def shred_after_the_tombstone_check(statement: str, _parameters: Any, _driver: Any) -> None:
        if "FROM tombstone" in statement and not shredded:
            # Another session, so SQLite's read keeps the snapshot it began with.
            thread = threading.Thread(target=shred)
            thread.start()
            thread.join(30)

    with after_each_driver_statement(catalog, shred_after_the_tombstone_check):
        if call == "replay_page":
            state, page = catalog.replay_page(1, REPLAY, limit=2)
        else:
            state, page = catalog.replay_page_at(1, REPLAY, offset=0, segments=2)
    assert shredded
    if catalog.dialect == "sqlite":  # one snapshot for the whole read: as it was when it began
        assert (state, len(page)) == (ReplayState.STORED, 2)
    else:
        assert (state, page) == (ReplayState.SHREDDED, [])
    assert catalog.replay_page(1, REPLAY, limit=2) == (ReplayState.SHREDDED, [])


def test_bounds_past_the_largest_stored_id_select_nothing(catalog: Catalog) -> None:
    rows = [_row(n, at=n * 100) for n in range(3)]
    catalog.insert_blob(_blob("b1", rows), rows)
    assert catalog.replay_ranges(1, REPLAY, min_segment=2**64 - 2) == []
    assert catalog.replay_ranges(1, REPLAY, after_segment=2**63 - 1) == []
    assert len(catalog.replay_ranges(1, REPLAY, stop_segment=2**63)) == 3
    assert catalog.replay_state(2**64 - 1, REPLAY) is ReplayState.UNKNOWN


@pytest.mark.postgres
def test_a_flush_waits_for_a_deletion_request_of_its_project(postgres_url: str) -> None:
    """No row of a deleted replay slips in between a flush's tombstone check and its insert.

    PostgreSQL only: SQLite serializes writers itself (a write on a stale snapshot fails).
    """
    import threading

    catalog = Catalog(postgres_url)
    catalog.migrate()
    rows = [_row(n, at=n * 100) for n in range(3)]
    outcome: list[Any] = []
    with catalog.engine.connect() as deleting:
        transaction = deleting.begin()
        catalog.lock_projects(deleting, {1}, shared=False)  # as Shredder.request does
        flush = threading.Thread(
            target=lambda: outcome.append(catalog.insert_blob(_blob("b1", rows), rows))
        )
        flush.start()
        flush.join(timeout=1.0)
        assert flush.is_alive() and outcome == []  # the flush waits for the request
        write_tombstone(deleting, 1, REPLAY)  # what the deletion request writes
        transaction.commit()
    flush.join(timeout=10)
    assert len(outcome) == 1
    assert (outcome[0].inserted, outcome[0].dropped_deleted) == (0, 3)  # it saw the tombstone
    assert catalog.replay_ranges(1, REPLAY) == []
    catalog.dispose()


def test_a_flush_records_each_new_replay_once_and_finds_its_segments(catalog: Catalog) -> None:
    # 600 replays: more than one chunk of the stored-segment query; their bucket and first
    # sighting are read back through SQLAlchemy's own types, as every other reader reads them.
    replays = [f"{n:032x}" for n in range(600)]
    rows = [_row(n % 3, replay=replay, at=n * 100) for n, replay in enumerate(replays)]
    catalog.insert_blob(_blob("b1", rows), rows)
    first_bucket = catalog.replay_bucket(1, replays[0])
    assert first_bucket == (NOW + timedelta(days=90)).date()
    assert catalog.replay_bucket(1, replays[-1]) == first_bucket
    later = [
        replace(_row(5, replay=replays[0]), expires_at=NOW + timedelta(days=400), blob_path="b2")
    ]
    catalog.insert_blob(_blob("b2", later), later)
    assert catalog.replay_bucket(1, replays[0]) == first_bucket  # the first sighting's
    with catalog.connection("test") as conn:
        seen = (
            conn.execute(select(Replay.first_seen_at).where(Replay.project_id == 1)).scalars().all()
        )
    assert len(seen) == 600
    assert {moment.replace(tzinfo=None) for moment in seen} == {NOW.replace(tzinfo=None)}
    stored = {(1, replay, n % 3) for n, replay in enumerate(replays)} | {(1, replays[0], 5)}
    absent = {(1, replays[0], 7), (1, "f" * 32, 0), (2, replays[1], 1)}
    assert catalog.stored_segments(stored | absent) == stored


def test_a_flush_records_its_blob_over_its_intent_and_never_over_a_collected_one(
    catalog: Catalog,
) -> None:
    """The blob row is one statement whatever came before it: an intent becomes the record, no
    intent gets one, and an intent GC already claimed fails the flush with nothing recorded."""
    later = NOW + timedelta(days=90)
    catalog.blobs.record_intent("pending", retention_days=90, created_at=NOW, expires_at=later)
    catalog.blobs.record_intent("collected", retention_days=90, created_at=NOW, expires_at=later)
    assert catalog.blobs.claim_orphans(["collected"], NOW) == ["collected"]
    for path, project in (("pending", 1), ("fresh", 2)):
        rows = [_row(0, project=project, path=path, size=70)]
        assert catalog.insert_blob(_blob(path, rows), rows).inserted == 1
    lost = [_row(0, project=3, path="collected")]
    with pytest.raises(BackendUnavailable, match="collected as an orphan"):
        catalog.insert_blob(_blob("collected", lost), lost)
    with catalog.connection("test") as conn:
        blobs = {
            path: (state, live, frames)
            for path, state, live, frames in conn.execute(
                select(Blob.path, Blob.state, Blob.live_bytes, Blob.frame_count)
            )
        }
    assert blobs == {
        "pending": ("live", 70, 1),
        "fresh": ("live", 70, 1),
        "collected": ("deleted", 0, 0),
    }
    assert catalog.replay_ranges(3, REPLAY) == []


@pytest.mark.postgres
def test_a_replay_another_writer_records_during_the_admission_keeps_its_bucket(
    postgres_url: str,
) -> None:
    """The admission counts the replays it records: a replay row committed by someone else
    while the admission waits on it (unseen by its snapshot, skipped by ON CONFLICT) is read
    back, and the flush's rows go to that row's bucket, not the flush's."""
    catalog = Catalog(postgres_url)
    catalog.migrate()
    rows = [_row(n, at=n * 100) for n in range(3)]
    theirs = (NOW + timedelta(days=91)).date()  # not the bucket this flush would record
    catalog.ensure_partition(theirs)
    outcome: list[Any] = []
    with catalog.engine.connect() as other:
        transaction = other.begin()
        other.execute(
            insert(Replay).values(
                project_id=1, replay_id=REPLAY, expiry_bucket=theirs, first_seen_at=NOW
            )
        )
        flush = threading.Thread(
            target=lambda: outcome.append(catalog.insert_blob(_blob("b1", rows), rows))
        )
        flush.start()
        flush.join(timeout=1.0)
        assert flush.is_alive() and outcome == []  # its INSERT waits for the other row
        transaction.commit()
    flush.join(timeout=10)
    assert len(outcome) == 1 and outcome[0].inserted == 3
    assert catalog.replay_bucket(1, REPLAY) == theirs
    assert [r.segment_id for r in catalog.replay_ranges(1, REPLAY)] == [0, 1, 2]
    catalog.dispose()


@pytest.mark.postgres
def test_array_parameters_reach_postgresql_as_the_same_values(postgres_url: str) -> None:
    """The flush's statements send arrays as one literal each: any string, even one that reads
    as NULL, holds a separator, a quote, a backslash or a brace, arrives unchanged."""
    from vault_store.catalog.catalog import _bigint_array, _text_array

    texts = ["", "NULL", "null", "a,b", 'q"uote', "back\\slash", "{brace}", " pad ", "é\t\n"]
    numbers = [0, -1, 2**63 - 1, 7]
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(%s AS text[]), CAST(%s AS bigint[]), CAST(%s AS text[])",
            (_text_array(texts), _bigint_array(numbers), _text_array([])),
        )
        assert cursor.fetchone() == (texts, numbers, [])
