"""The catalog's partitions on PostgreSQL (and the same calls on SQLite's plain table): one
partition per replay, pruned lookups, duplicates across days, creation ahead, whole drops."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import delete, event, func, select, text, update

from tests.builders import segment
from tests.conftest import PG_URL, VaultFactory, need
from tests.integration.helpers import driver_statements, read_events, run
from vault_store import FlushPolicy, LocalBlobStore, LocalKms, Settings, Vault
from vault_store.catalog import Catalog
from vault_store.catalog.models import RecordingByteRange, Replay
from vault_store.catalog.partitions import _delete_in_partition_sql, partitions
from vault_store.catalog.records import Scope
from vault_store.services.maintenance import maintain, needed_buckets
from vault_store.services.retention import expire
from vault_store.services.shredder import Shredder

DAY = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _postgres_vault(postgres_url: str, tmp_path: Path, clock: Clock) -> tuple[Catalog, Vault]:
    """A migrated catalog in a fresh PostgreSQL schema, and a vault over it."""
    pg = Catalog(postgres_url)
    pg.migrate()
    vault = Vault(
        catalog=pg,
        blob_store=LocalBlobStore(tmp_path / "blobs"),
        kms=LocalKms(tmp_path / "kek.json"),
        clock=clock,
    )
    return pg, vault


def _two_projects_over_three_days(vault: Vault, clock: Clock) -> None:
    """Projects 5 and 6, a replay of 4 segments each a day for 3 days, a flush a day: each
    project's rows in three partitions, at the same positions in each."""
    for day in range(3):
        clock.now = DAY + timedelta(days=day)
        for project in (5, 6):
            for n in range(4):
                vault.ingest_segment(segment(f"{project:016x}{day:016x}", n, project=project))
        vault.flush()


def test_a_replay_keeps_its_partition_and_a_late_duplicate_is_ignored(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    clock = Clock(DAY)
    vault = make_vault(clock=clock)
    replay = "a" * 32
    for n in range(3):
        vault.ingest_segment(segment(replay, n, project=3))
    vault.flush()
    # Two days later (another expiry day): a redelivered duplicate and a late new segment.
    clock.now = DAY + timedelta(days=2)
    vault.ingest_segment(segment(replay, 1, project=3, content=b'["changed"]'))
    vault.ingest_segment(segment(replay, 3, project=3))
    results = vault.flush()
    assert sum(r.duplicates for r in results) == 1
    assert read_events(vault, 3, replay) == [[0], [1], [2], [3]]  # first write wins
    with catalog.connection("test") as conn:
        buckets = set(conn.execute(select(RecordingByteRange.expiry_bucket)).scalars())
        rows = conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one()
    assert buckets == {(DAY + timedelta(days=30)).date()} and rows == 4
    assert catalog.replay_bucket(3, replay) == (DAY + timedelta(days=30)).date()


def test_a_flush_asks_the_partitions_its_replays_live_in_which_segments_are_stored(
    postgres_url: str, tmp_path: Path
) -> None:
    """A flush of replays already recorded checks for stored segments in the partitions those
    replays live in, named in the statement (not through the parent, which plans and prunes
    every partition), and still drops every duplicate, whichever partition holds it."""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    try:
        _two_projects_over_three_days(vault, clock)
        clock.now = DAY + timedelta(days=3)
        # Days 0 and 1 of project 5 again (duplicates), and a new segment of each.
        for day in (0, 1):
            replay = f"{5:016x}{day:016x}"
            for n in (1, 3, 4):
                vault.ingest_segment(segment(replay, n, project=5, content=b'["again"]'))
        with driver_statements(pg, "segment_id BETWEEN") as statements:
            results = vault.flush()
        assert (sum(r.duplicates for r in results), sum(r.inserted for r in results)) == (4, 2)
        # The flush's check before the upload, and its admission's, in the transaction.
        assert statements
        for statement, _parameters in statements:
            named = set(re.findall(r"recording_byte_range_p\d{8}", statement))
            assert named == {
                f"recording_byte_range_p{(DAY + timedelta(days=30 + day)):%Y%m%d}" for day in (0, 1)
            }, statement
            assert "FROM recording_byte_range t" not in statement
        for day in (0, 1):
            replay = f"{5:016x}{day:016x}"
            assert read_events(vault, 5, replay) == [[0], [1], [2], [3], ["again"]]
    finally:
        vault.close()
        pg.dispose()


def _stale_partition_reads(
    pg: Catalog, monkeypatch: pytest.MonkeyPatch, stale_reads: set[int]
) -> list[bool]:
    """Make the reads of the catalog's partitions numbered in `stale_reads` (from 1) answer
    with a partition that does not exist, as if retention dropped it right after; returns the
    list it appends each read's staleness to."""
    read = pg.partition_days.read
    answers: list[bool] = []

    def dropped_since(conn: Any) -> Any:
        days = read(conn)
        answers.append(len(answers) + 1 in stale_reads)
        return dict.fromkeys(days, "recording_byte_range_p19990101") if answers[-1] else days

    monkeypatch.setattr(pg.partition_days, "read", dropped_since)
    return answers


def test_a_flush_whose_partition_list_went_stale_asks_again(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention may drop a partition between the moment the partitions are read and the
    statement that names them. The statement then fails on the missing table; the flush is
    redone whole with the partitions read anew, and no duplicate gets in. (Simulated: the first
    read answers with a partition that does not exist.)"""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    try:
        _two_projects_over_three_days(vault, clock)
        # The flush reads the partitions twice (its check before the upload, then its
        # admission, in the insert transaction); the second is the one under test.
        stale_reads = {2}
        answers = _stale_partition_reads(pg, monkeypatch, stale_reads)
        clock.now = DAY + timedelta(days=3)
        replay = f"{6:016x}{2:016x}"
        for n in (2, 3, 4):
            vault.ingest_segment(segment(replay, n, project=6, content=b'["again"]'))
        results = vault.flush()
        assert (sum(r.duplicates for r in results), sum(r.inserted for r in results)) == (2, 1)
        assert answers == [False, True, False]  # the insert was redone after the stale one
        assert read_events(vault, 6, replay) == [[0], [1], [2], [3], ["again"]]
        answers.clear()
        stale_reads.clear()
        stale_reads.add(1)
        assert pg.stored_segments({(6, replay, 0), (6, replay, 9)}) == {(6, replay, 0)}
        assert answers == [True, False]
    finally:
        vault.close()
        pg.dispose()


def test_a_shred_chunk_whose_partition_list_went_stale_is_redone(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention may drop a partition between the moment a chunk reads the partitions and its
    DELETE that names one. The chunk then fails on the missing table and is redone whole with
    the partitions read anew: the deletion completes, verified. (Simulated: the first read
    answers with a partition that does not exist.)"""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    try:
        _two_projects_over_three_days(vault, clock)
        answers = _stale_partition_reads(pg, monkeypatch, {1})
        shredder = Shredder(pg)
        replay = f"{5:016x}{1:016x}"
        status = shredder.run(
            shredder.request(Scope.REPLAY, 5, replay_id=replay, requested_by="dpo", reason="x")
        )
        assert answers[:2] == [True, False]
        assert (status.status.value, status.rows_deleted, status.verified_rows_left) == (
            "done",
            4,
            0,
        )
        with pg.connection("test") as conn:
            left = conn.execute(
                select(func.count())
                .select_from(RecordingByteRange)
                .where(RecordingByteRange.replay_id == replay)
            ).scalar_one()
        assert left == 0
    finally:
        vault.close()
        pg.dispose()


def test_a_replay_lookup_touches_one_partition(postgres_url: str, tmp_path: Path) -> None:
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    for day in range(4):  # four days of replays: four partitions
        clock.now = DAY + timedelta(days=day)
        vault.ingest_segment(segment(f"{day + 1:032x}", 0, project=3))
        vault.flush()
    catalog = vault._catalog
    with catalog.connection("test") as conn:
        assert len(partitions(conn)) == 4
    with driver_statements(catalog, "FROM recording_byte_range") as statements:
        assert len(catalog.replay_ranges(3, f"{3:032x}")) == 1
    (statement, parameters) = statements[-1]
    with catalog.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + statement, parameters)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    scanned = set(re.findall(r"recording_byte_range_p\d{8}(?!_)", plan))
    assert scanned == {f"recording_byte_range_p{(DAY + timedelta(days=32)):%Y%m%d}"}, plan
    vault.close()
    pg.dispose()


def test_maintenance_creates_ahead_and_drops_expired_partitions_whole(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    old, live = "b" * 32, "c" * 32
    vault = make_vault(clock=Clock(DAY - timedelta(days=40)))  # expired ten days ago
    vault.ingest_segment(segment(old, 0, project=3))
    vault.flush()
    current = make_vault(clock=Clock(DAY))
    current.ingest_segment(segment(live, 0, project=3))
    current.flush()

    dry = maintain(
        catalog, retention_classes=[30, 90], ahead_days=2, dry_run=True, clock=Clock(DAY)
    )
    partitioned = catalog.dialect == "postgresql"
    assert dry.partitioned is partitioned
    with catalog.connection("test") as conn:
        rows = conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one()
    assert rows == 2  # a dry run changes nothing
    if partitioned:
        assert len(dry.dropped) == 1 and dry.rows_dropped == 1
        assert len(dry.created) == 5  # +30 is there already; +31, +32, +90, +91, +92

    report = maintain(catalog, retention_classes=[30, 90], ahead_days=2, clock=Clock(DAY))
    if partitioned:
        assert report.rows_dropped == 1 and len(report.dropped) == 1
        with catalog.connection("test") as conn:
            covered = partitions(conn)
        for bucket in needed_buckets(DAY.date(), [30, 90], 2):
            assert any(p.covers(bucket) for p in covered)
        assert all(p.end > DAY.date() for p in covered)  # the expired one is gone
    else:
        expire(catalog, current._blob_store, now=DAY)  # SQLite: row by row, same outcome
        maintain(catalog, retention_classes=[30, 90], clock=Clock(DAY))
    assert read_events(current, 3, live) == [[0]]
    assert catalog.replay_bucket(3, old) is None
    with catalog.connection("test") as conn:
        assert conn.execute(select(func.count()).select_from(Replay)).scalar_one() == 1


def test_retention_drops_expired_partitions_first(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    vault = make_vault(clock=Clock(DAY - timedelta(days=40)))
    for n in range(5):
        vault.ingest_segment(segment("d" * 32, n, project=3))
    vault.flush()
    result = expire(catalog, vault._blob_store, now=DAY)
    assert result.rows_expired == 5 and result.blobs_deleted == 1
    with catalog.connection("test") as conn:
        assert conn.execute(select(func.count()).select_from(RecordingByteRange)).scalar_one() == 0
        if catalog.dialect == "postgresql":
            assert partitions(conn) == []


def test_week_partitions_are_clipped_to_the_gaps_between_day_partitions(
    postgres_url: str,
) -> None:
    daily, weekly = Catalog(postgres_url), Catalog(postgres_url, partition_width="week")
    daily.migrate()
    try:
        wednesday = date(2026, 12, 23)
        daily.ensure_partition(wednesday)
        weekly.ensure_partition(wednesday + timedelta(days=1))  # same week, after the day
        weekly.ensure_partition(wednesday - timedelta(days=1))  # same week, before it
        with daily.connection("test") as conn:
            ranges = [(p.first, p.end) for p in partitions(conn)]
    finally:
        daily.dispose()
        weekly.dispose()
    monday = date(2026, 12, 21)
    assert ranges == [
        (monday, wednesday),
        (wednesday, wednesday + timedelta(days=1)),
        (wednesday + timedelta(days=1), monday + timedelta(days=7)),
    ]


def test_catalog_maintain_command(tmp_path: Any, database_url: str) -> None:
    env = {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": database_url,
    }
    dry = run(env, "catalog", "maintain", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    document = json.loads(dry.stdout)
    assert document["dry_run"] is True
    assert document["partitioned"] is database_url.startswith("postgresql")
    done = run(env, "catalog", "maintain", "--ahead-days", "1", "--json")
    assert done.returncode == 0, done.stderr
    if database_url.startswith("postgresql"):
        assert len(json.loads(done.stdout)["partitions"]) == 4  # +30, +31, +90, +91
    text_out = run(env, "catalog", "maintain", "--dry-run", "--ahead-days", "1")
    assert text_out.returncode == 0 and b"would create 0" in text_out.stdout
    if not database_url.startswith("postgresql"):
        assert document["warnings"] == []  # autovacuum is PostgreSQL's


def test_a_chunked_shred_across_partitions_deletes_only_its_rows(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    # Projects 5 and 6 share three partitions; their rows sit at the same physical positions
    # in each (same insert order), which a delete by ctid alone would confuse.
    clock = Clock(DAY)
    vault = make_vault(clock=clock)
    _two_projects_over_three_days(vault, clock)
    shredder = Shredder(catalog, chunk_rows=3)
    deletion = shredder.request(Scope.PROJECT, 5, requested_by="dpo", reason="closed")
    # One chunk, as if interrupted after it.
    assert shredder.run(deletion, max_chunks=1).rows_deleted == 3
    status = shredder.run(deletion)  # resumed
    assert status.rows_deleted == 12
    with catalog.connection("test") as conn:
        left = conn.execute(
            select(RecordingByteRange.project_id, func.count()).group_by(
                RecordingByteRange.project_id
            )
        ).all()
    assert dict(left) == {6: 12}
    for day in range(3):
        assert read_events(vault, 6, f"{6:016x}{day:016x}") == [[0], [1], [2], [3]]


def test_a_shred_resumed_by_another_process_finds_rows_no_replay_row_leads_to(
    make_vault: VaultFactory, catalog: Catalog, database_url: str
) -> None:
    """On PostgreSQL a chunk walks the replay table; a resumed run (a new process, its walk
    lost) starts the walk again, and a row whose replay row is gone (edited by hand) is still
    deleted, by the general path, before the deletion is verified done."""
    clock = Clock(DAY)
    vault = make_vault(clock=clock)
    _two_projects_over_three_days(vault, clock)
    with catalog.transaction("test") as conn:
        conn.execute(
            delete(Replay).where(Replay.project_id == 5, Replay.replay_id == f"{5:016x}{1:016x}")
        )
    deletion = Shredder(catalog, chunk_rows=5).request(
        Scope.PROJECT, 5, requested_by="dpo", reason="closed"
    )
    assert Shredder(catalog, chunk_rows=5).run(deletion, max_chunks=1).rows_deleted == 5
    other = Catalog(database_url)  # another process: no walk of this deletion in memory
    try:
        status = Shredder(other, chunk_rows=5).run(deletion, max_chunks=20)
    finally:
        other.dispose()
    assert (status.status.value, status.rows_deleted, status.verified_rows_left) == ("done", 12, 0)
    with catalog.connection("test") as conn:
        left = conn.execute(
            select(RecordingByteRange.project_id, func.count()).group_by(
                RecordingByteRange.project_id
            )
        ).all()
    assert dict(left) == {6: 12}


def test_a_project_shred_its_walk_completes_runs_no_general_pass(
    postgres_url: str, tmp_path: Path
) -> None:
    """The general pass scans the project's index entries in every partition; with every row
    reached by the walk, the finishing count (which scans them too) is the only such scan."""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    _two_projects_over_three_days(vault, clock)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split()))

    event.listen(pg.engine, "before_cursor_execute", record)
    try:
        status = Shredder(pg, chunk_rows=5).run(
            Shredder(pg).request(Scope.PROJECT, 5, requested_by="dpo", reason="closed")
        )
    finally:
        event.remove(pg.engine, "before_cursor_execute", record)
        vault.close()
        pg.dispose()
    assert (status.status.value, status.rows_deleted, status.verified_rows_left) == ("done", 12, 0)
    assert [s for s in statements if "tableoid" in s] == []
    finishing = [s for s in statements if "deletion_rows_left" in s]
    assert len(finishing) == 1, finishing


def test_a_partition_made_after_a_deletion_ran_is_found_by_the_next_deletions_walk(
    postgres_url: str, tmp_path: Path
) -> None:
    """A worker keeps which partition holds each day across chunks and deletions, and checks
    the partitions' oids at each chunk: a partition created since (a new day's replays) is
    read, and its replay is deleted by the walk, not left for the general pass after a failed
    finishing count. Across chunks with no partition made, the bounds are read once."""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split()))

    try:
        _two_projects_over_three_days(vault, clock)
        shredder = Shredder(pg, chunk_rows=3)
        event.listen(pg.engine, "before_cursor_execute", record)
        first = shredder.run(
            shredder.request(Scope.PROJECT, 5, requested_by="dpo", reason="closed")
        )
        assert (first.status.value, first.rows_deleted) == ("done", 12)
        bounds_read = [s for s in statements if "pg_get_expr" in s]
        assert len(bounds_read) == 1, bounds_read  # 4 chunks and more, one read of the bounds
        assert len([s for s in statements if s.startswith("SELECT inhrelid")]) >= 4
        # A new day: its partition is made by the flush, after the deletion above read them.
        clock.now = DAY + timedelta(days=5)
        late = f"{6:016x}{5:016x}"
        for n in range(4):
            vault.ingest_segment(segment(late, n, project=6))
        vault.flush()
        statements.clear()
        second = shredder.run(
            shredder.request(Scope.REPLAY, 6, replay_id=late, requested_by="dpo", reason="erasure")
        )
    finally:
        event.remove(pg.engine, "before_cursor_execute", record)
        vault.close()
    assert (second.status.value, second.rows_deleted, second.verified_rows_left) == ("done", 4, 0)
    assert [s for s in statements if "tableoid" in s] == []  # no general pass was needed
    assert len([s for s in statements if "pg_get_expr" in s]) == 1  # the bounds read again
    with pg.connection("test") as conn:
        left = conn.execute(
            select(func.count())
            .select_from(RecordingByteRange)
            .where(RecordingByteRange.replay_id == late)
        ).scalar_one()
    pg.dispose()
    assert left == 0


def test_a_replay_request_finds_rows_its_replay_row_does_not_lead_to(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    """Whether a replay holds rows decides whether its deletion runs at all. A replay row lost
    by hand, or rows moved by hand out of the partition their replay row names, must still be
    found (then deleted and verified), never answered "nothing held"."""
    clock = Clock(DAY)
    vault = make_vault(clock=clock)
    _two_projects_over_three_days(vault, clock)
    lost, moved = f"{5:016x}{0:016x}", f"{5:016x}{1:016x}"
    with catalog.transaction("test") as conn:
        conn.execute(delete(Replay).where(Replay.project_id == 5, Replay.replay_id == lost))
        conn.execute(
            update(RecordingByteRange)
            .where(RecordingByteRange.project_id == 5, RecordingByteRange.replay_id == moved)
            .values(expiry_bucket=RecordingByteRange.expiry_bucket + timedelta(days=1))
        )
    shredder = Shredder(catalog, chunk_rows=3)
    for replay in (lost, moved):
        deletion = shredder.request(
            Scope.REPLAY, 5, replay_id=replay, requested_by="dpo", reason="erasure"
        )
        assert (
            shredder.status(deletion).status.value,
            shredder.status(deletion).replays_deleted,
        ) == (
            "pending",
            1,
        )
        status = shredder.run(deletion)
        assert (status.status.value, status.rows_deleted, status.verified_rows_left) == (
            "done",
            4,
            0,
        )
    with catalog.connection("test") as conn:
        left = conn.execute(
            select(RecordingByteRange.replay_id).where(RecordingByteRange.project_id == 5)
        ).scalars()
        assert set(left) == {f"{5:016x}{2:016x}"}


def test_a_replay_request_looks_for_its_rows_in_its_own_partition_first(
    postgres_url: str, tmp_path: Path
) -> None:
    """A replay that has rows is found in the partition its replay row names: the request
    does not search all of them (the finishing count still does)."""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    try:
        _two_projects_over_three_days(vault, clock)
        with driver_statements(pg, "recording_byte_range") as statements:
            deletion = Shredder(pg).request(
                Scope.REPLAY, 6, replay_id=f"{6:016x}{2:016x}", requested_by="dpo", reason="x"
            )
        assert Shredder(pg).status(deletion).replays_deleted == 1
        searches = [statement for statement, _parameters in statements]
        assert searches and all("expiry_bucket = " in s for s in searches), searches
    finally:
        vault.close()
        pg.dispose()


def test_the_finishing_count_function_counts_every_partition(
    postgres_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL a deletion's finishing count runs in the catalog's function (its plan kept
    by the server): it counts the same rows as the query it replaces, in every partition, for a
    project and for tombstoned replays, whatever partition a row was moved to."""
    clock = Clock(DAY)
    pg, vault = _postgres_vault(postgres_url, tmp_path, clock)
    try:
        _two_projects_over_three_days(vault, clock)
        shredder = Shredder(pg)
        project = shredder.request(Scope.PROJECT, 5, requested_by="dpo", reason="closed")
        replay = f"{6:016x}{1:016x}"
        one = shredder.request(Scope.REPLAY, 6, replay_id=replay, requested_by="dpo", reason="x")
        for day in range(3):  # the partitions the rows are moved to
            pg.ensure_partition((DAY + timedelta(days=37 + day)).date())
        with pg.transaction("test") as conn:
            # Rows of both targets moved into other partitions, by hand.
            conn.execute(
                update(RecordingByteRange)
                .where(RecordingByteRange.segment_id >= 2)
                .values(expiry_bucket=RecordingByteRange.expiry_bucket + timedelta(days=7))
            )
        counted = "SELECT deletion_rows_left(:project, :deletion, :whole)"
        with pg.connection("test") as conn:
            assert (
                len(
                    {
                        b
                        for (b,) in conn.execute(
                            text("SELECT DISTINCT tableoid FROM recording_byte_range")
                        )
                    }
                )
                == 6
            )
            for _ in range(7):  # past the calls after which the server keeps a generic plan
                assert [
                    conn.execute(text(counted), values).scalar_one()
                    for values in (
                        {"project": 5, "deletion": project, "whole": True},
                        {"project": 6, "deletion": one, "whole": False},
                        {"project": 6, "deletion": project, "whole": False},
                    )
                ] == [12, 4, 0]
        assert shredder.run(project).status.value == "done"
        assert shredder.run(one).status.value == "done"
        with pg.connection("test") as conn:
            left = conn.execute(
                select(RecordingByteRange.project_id, func.count()).group_by(
                    RecordingByteRange.project_id
                )
            ).all()
        assert dict(left) == {6: 8}
    finally:
        vault.close()
        pg.dispose()


def test_maintain_reports_the_exact_rows_of_a_fresh_partition(
    postgres_url: str, tmp_path: Path
) -> None:
    """Before ANALYZE PostgreSQL has no estimate (reltuples -1, shown as "~0 rows" before): a
    small partition is counted, so the one holding every row says how many."""
    import os

    env = {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path),
        "VAULT_STORE_DATABASE_URL": postgres_url,
    }
    with Vault.from_settings(Settings.from_env(env)) as vault:
        for n in range(7):
            vault.ingest_segment(segment("c" * 32, n, project=3))
        vault.flush()
    done = run(env, "catalog", "maintain", "--json")
    assert done.returncode == 0, done.stderr
    holding = [p for p in json.loads(done.stdout)["partitions"] if p["rows_estimate"]]
    assert [(p["rows_estimate"], p["rows_exact"]) for p in holding] == [(7, True)]
    shown = run(env, "catalog", "maintain", "--dry-run")
    assert re.search(rf"{holding[0]['name']}\s.*\s7 rows\s", shown.stdout.decode()), shown.stdout
    assert b"~0 rows" not in shown.stdout


def test_gc_and_expire_report_progress_per_blob(make_vault: VaultFactory) -> None:
    clock = Clock(DAY)
    vault = make_vault(clock=clock)
    for project in (5, 6):
        for n in range(3):
            vault.ingest_segment(segment(f"{project:032x}", n, project=project))
        vault.flush()
    vault.shred(Scope.PROJECT, 5, requested_by="dpo", reason="closed")
    steps: list[tuple[str, int, int | None]] = []
    gone = vault.collect_garbage(progress=lambda *step: steps.append(step))
    assert steps == [("dead blobs", 1, 1)] and len(gone.dead) == 1
    steps.clear()
    clock.now = DAY + timedelta(days=400)  # past every retention class
    expired = vault.expire(progress=lambda *step: steps.append(step))
    assert expired.blobs_deleted == 1
    assert ("expired blobs", 1, 1) in steps
    rows = [done for step, done, _ in steps if step == "expired rows"]
    assert rows == sorted(rows) and (not rows or rows[-1] == expired.rows_expired)


def test_overwrite_reports_progress_per_blob_rewritten(make_vault: VaultFactory) -> None:
    vault = make_vault(flush=FlushPolicy(max_segments=2))
    for n in range(4):  # two blobs of two segments each
        vault.ingest_segment(segment("e" * 32, n, project=3))
    vault.flush()
    status = vault.shred(
        Scope.REPLAY,
        3,
        replay_id="e" * 32,
        requested_by="dpo",
        reason="r",
        overwrite=True,
        run=False,
    )
    vault._shredder.run(status.id)  # rows deleted, ranges on record, nothing zeroed yet
    steps: list[tuple[str, int, int | None]] = []
    result = vault.run_overwrites(progress=lambda *step: steps.append(step))
    assert steps == [("blobs rewritten", 1, 2), ("blobs rewritten", 2, 2)]
    assert result.blobs_rewritten == 2


def test_the_shreds_delete_statement_names_only_a_partition() -> None:
    """The partition's name is formatted into the statement: anything else is refused."""
    assert "recording_byte_range_p20261122" in _delete_in_partition_sql(
        "recording_byte_range_p20261122", with_jobs=True
    )
    with pytest.raises(ValueError, match="not a partition"):
        _delete_in_partition_sql("recording_byte_range; DROP TABLE blob", with_jobs=False)


def test_maintain_warns_where_autovacuum_is_off(tmp_path: Any, postgres_url: str) -> None:
    """Each place autovacuum is off is named: the server (this machine's is off), and a
    partition whose own storage option turns it off."""
    catalog = Catalog(postgres_url)
    catalog.migrate()
    try:
        with catalog.connection("test") as conn:
            server_off = conn.execute(select(func.current_setting("autovacuum"))).scalar() != "on"
        report = maintain(catalog, retention_classes=[30], ahead_days=0, clock=lambda: DAY)
        server = ["the server (autovacuum = off)"] if server_off else []
        assert [
            w.split("autovacuum is off for ")[1].split(":")[0] for w in report.warnings
        ] == server
        partition = report.partitions[0].name
        with catalog.transaction("test") as conn:
            # Stored as spelled: "off" must count as "false" does.
            conn.exec_driver_sql(f"ALTER TABLE {partition} SET (autovacuum_enabled = off)")
        report = maintain(catalog, retention_classes=[30], ahead_days=0, clock=lambda: DAY)
        named = [w.split("autovacuum is off for ")[1].split(":")[0] for w in report.warnings]
        assert named == [*server, f"table {partition} (autovacuum_enabled = false)"]
    finally:
        catalog.dispose()
    env = {
        **os.environ,
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": postgres_url,
    }
    as_json = run(env, "catalog", "maintain", "--json")
    assert as_json.returncode == 0, as_json.stderr  # a warning, not a failure
    assert len(json.loads(as_json.stdout)["warnings"]) == len(named)
    as_text = run(env, "catalog", "maintain")
    assert f"warning: autovacuum is off for table {partition}" in as_text.stdout.decode()


@pytest.mark.postgres
def test_maintain_runs_in_a_schema_named_with_capitals(postgres_available: bool) -> None:
    """The autovacuum check finds the catalog's schema by name: a quoted, mixed-case schema is
    not folded to lower case (which would fail every maintenance run)."""
    need(postgres_available, f"PostgreSQL not reachable at {PG_URL}")
    schema = f"Mixed_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(PG_URL) as conn, conn.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    catalog = Catalog(f"{PG_URL}?options=-csearch_path%3D%22{schema}%22")
    try:
        catalog.migrate()
        report = maintain(catalog, retention_classes=[30], ahead_days=0, clock=lambda: DAY)
        assert report.created and not any("could not check" in w for w in report.warnings)
    finally:
        catalog.dispose()
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
