"""Crypto-shredding on SQLite and PostgreSQL: replays, users, projects, overwrite, retention, GC."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

from tests.builders import segment
from tests.conftest import VaultFactory
from tests.integration.helpers import read_events
from vault_store import FlushPolicy, LocalKms, ReplayNotFound, ReplayShredded, Vault
from vault_store.blobstore import Buffers, LocalBlobStore
from vault_store.catalog import BlobRecord, Catalog, RangeRecord
from vault_store.catalog.models import Blob, OverwriteJob, RecordingByteRange, ReplaySubject
from vault_store.catalog.records import BlobState, Scope, Status
from vault_store.errors import BackendUnavailable, CorruptData, VaultError
from vault_store.services.gc import collect
from vault_store.services.overwriter import Overwriter
from vault_store.services.retention import expire
from vault_store.services.shredder import Shredder

X, Y, Z = "a" * 32, "b" * 32, "c" * 32


def _blob_fingerprints(root: Path) -> dict[str, tuple[str, int, int]]:
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_ino,
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*.vsb"))
    }


def test_shredding_a_700_segment_replay_touches_no_blob(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault(flush=FlushPolicy(max_segments=400))
    for n in range(700):
        vault.ingest_segment(segment(X, n, padded=True))
        if n % 2 == 0:
            vault.ingest_segment(segment(Y, n // 2, padded=True))  # a neighbour in the same blobs
    vault.flush()
    before = _blob_fingerprints(tmp_path / "blobs")
    live_before = vault.stats().live_bytes

    status = vault.shred(
        Scope.REPLAY, 1, replay_id=X, requested_by="dpo@example.com", reason="GDPR art. 17"
    )

    assert (status.status, status.rows_deleted, status.replays_deleted) == (Status.DONE, 700, 1)
    assert status.completed_at is not None and status.bytes_shredded > 0
    assert _blob_fingerprints(tmp_path / "blobs") == before  # not a byte, not an inode changed
    with pytest.raises(ReplayShredded):
        read_events(vault, 1, X)
    with pytest.raises(ReplayShredded):
        read_events(make_vault(), 1, X)  # another process, with a cold cache
    neighbour = read_events(make_vault(), 1, Y)
    assert [s[0]["data"]["n"] for s in neighbour] == list(range(350))
    assert vault.stats().live_bytes == live_before - status.bytes_shredded
    with vault._catalog.engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).where(RecordingByteRange.replay_id == X)).scalar_one()
            == 0
        )


def test_a_replay_shred_sends_the_same_statements_whatever_its_rows_and_blobs(
    make_vault: VaultFactory,
) -> None:
    # Per-row work stays in the database (issue 20): the deleted rows are summed per blob there,
    # and the blobs' live bytes lowered in one statement, so a replay of twice the rows over
    # twice the blobs sends exactly the same statements, none returning a row per range row.
    vault = make_vault(flush=FlushPolicy(max_segments=40))
    for replay, segments in ((X, 120), (Y, 240), (Z, 1)):  # 3, 6 and 1 blobs
        for n in range(segments):
            vault.ingest_segment(segment(replay, n, padded=True))
        vault.flush()
    vault.shred(Scope.REPLAY, 1, replay_id=Z, requested_by="a", reason="warm-up")
    engine = vault._catalog.engine
    live = vault.stats().live_bytes

    def shred(replay: str) -> tuple[int, list[str], int]:
        sent: list[str] = []
        returned: list[int] = []

        def count(_c: Any, cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(statement)
            # psycopg2 knows how many rows a statement returned; sqlite3 does not say.
            if cursor.description is not None and engine.dialect.name == "postgresql":
                returned.append(cursor.rowcount)

        event.listen(engine, "after_cursor_execute", count)
        try:
            status = vault.shred(Scope.REPLAY, 1, replay_id=replay, requested_by="a", reason="b")
        finally:
            event.remove(engine, "after_cursor_execute", count)
        assert status.status is Status.DONE
        nonlocal live
        assert vault.stats().live_bytes == live - status.bytes_shredded
        live -= status.bytes_shredded
        return status.rows_deleted, sent, max(returned, default=0)

    rows_x, sent_x, most_x = shred(X)
    rows_y, sent_y, most_y = shred(Y)
    assert (rows_x, rows_y) == (120, 240)
    assert len(sent_y) == len(sent_x)
    assert max(most_x, most_y) <= 6


def test_reads_stop_as_soon_as_a_deletion_is_recorded(make_vault: VaultFactory) -> None:
    vault = make_vault()
    vault.ingest_segment(segment(X, 0, padded=True))
    vault.flush()
    status = vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b", run=False)
    assert status.status is Status.PENDING
    with pytest.raises(ReplayShredded):
        read_events(make_vault(), 1, X)  # rows still exist, but the request is recorded
    assert vault.resume_deletion(status.id).status is Status.DONE


def test_late_segments_of_a_shredded_replay_are_dropped_without_a_new_key(
    make_vault: VaultFactory,
) -> None:
    vault = make_vault()
    vault.ingest_segment(segment(X, 0, padded=True))
    vault.flush()
    vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b")
    late = make_vault()  # another worker that never heard of the deletion
    taken = late.ingest_segment(segment(X, 1, padded=True))
    # Dropped before a key was made for it, so nothing is buffered and no blob is written.
    assert (taken.buffered, taken.dropped_deleted) == (False, True)
    assert late.flush() == []
    with vault._catalog.engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).where(RecordingByteRange.replay_id == X)).scalar_one()
            == 0
        )
    with pytest.raises(ReplayShredded):
        read_events(vault, 1, X)


def test_user_deletion_uses_the_keyed_subject_index(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    for replay, user in ((X, "alice"), (Y, "bob"), (Z, "alice")):
        for n in range(3):
            vault.ingest_segment(segment(replay, n, user=user, padded=True))
    vault.flush()
    with vault._catalog.engine.connect() as conn:
        stored = b"".join(
            bytes(h) for h in conn.execute(select(ReplaySubject.subject_hash)).scalars()
        )
        dump = repr(conn.execute(text("SELECT * FROM replay_subject")).all()).lower()
    assert len(stored) == 32 * 2 * 3  # id and email, for each of three replays
    assert "alice" not in dump and "example.com" not in dump

    status = vault.shred(
        Scope.USER, 1, user="ALICE@example.com ", requested_by="dpo", reason="user request"
    )
    assert (status.scope, status.replays_deleted, status.rows_deleted) == (Scope.USER, 2, 6)
    assert status.target is not None and "alice" not in status.target
    for replay in (X, Z):
        with pytest.raises(ReplayShredded):
            read_events(vault, 1, replay)
    assert len(read_events(vault, 1, Y)) == 3
    with vault._catalog.engine.connect() as conn:
        left = conn.execute(select(ReplaySubject.replay_id).distinct()).scalars().all()
    assert left == [Y]


def test_shredding_twice_and_unknown_targets_are_recorded_as_nothing_held(
    make_vault: VaultFactory,
) -> None:
    vault = make_vault()
    vault.ingest_segment(segment(X, 0, padded=True))
    vault.flush()
    first = vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b")
    assert (first.status, first.rows_deleted, first.verified_rows_left) == (Status.DONE, 1, 0)
    assert first.verified_at is not None
    assert vault.resume_deletion(first.id) == vault.deletion_status(first.id)
    again = vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b")
    assert (again.status, again.rows_deleted, again.previous_deletion_id) == (
        Status.NOTHING_HELD,
        0,
        first.id,
    )
    never = vault.shred(Scope.REPLAY, 1, replay_id=Y, requested_by="a", reason="typo")
    assert (never.status, never.replays_deleted, never.previous_deletion_id) == (
        Status.NOTHING_HELD,
        0,
        None,
    )
    nobody = vault.shred(Scope.USER, 1, user="nobody", requested_by="a", reason="b")
    assert (nobody.status, nobody.replays_deleted) == (Status.NOTHING_HELD, 0)
    empty = vault.shred(Scope.PROJECT, 99, requested_by="a", reason="b")
    assert (empty.status, empty.replays_deleted) == (Status.NOTHING_HELD, 0)
    # Recorded with its audit event (the request and the search are the proof).
    kinds = {
        (event.kind, event.details["status"])
        for event in vault.audit_events()
        if event.details.get("deletion_id") == never.id
    }
    assert kinds == {("deletion.requested", "nothing_held")}
    assert vault.verify_audit().ok
    # Nothing was held, but the request still stands: a segment of the replay that was still in
    # a worker's buffer or on the queue when it was asked for is dropped, never stored after the
    # answer "nothing held".
    late = vault.ingest_segment(segment(Y, 0, padded=True))
    assert late.dropped_deleted
    assert vault.flush() == []
    with pytest.raises(ReplayShredded):
        read_events(vault, 1, Y)


def test_a_deletion_is_done_only_once_a_finishing_check_finds_no_row(
    make_vault: VaultFactory,
) -> None:
    """A row that appears after the last chunk (as a racing flush did on SQLite) keeps the
    deletion open: finish sees it, does not mark it done, and the run deletes it."""
    vault = make_vault()
    for n in range(3):
        vault.ingest_segment(segment(X, n, padded=True))
    vault.flush()
    catalog = vault._catalog
    status = vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b", run=False)
    shredder = Shredder(catalog, chunk_rows=10)
    assert shredder.run(status.id, max_chunks=1).status is Status.RUNNING
    running = catalog.deletions.status(status.id)
    assert catalog.deletions.delete_chunk(running, 10, now=datetime.now(UTC)) == 0
    _slip_row(catalog, X)
    still_open = catalog.deletions.finish(running, now=datetime.now(UTC))
    assert (still_open.status, still_open.verified_at) == (Status.RUNNING, None)
    done = shredder.run(status.id)
    assert (done.status, done.verified_rows_left, done.rows_deleted) == (Status.DONE, 0, 4)
    completed = [
        event.details
        for event in vault.audit_events()
        if event.kind == "deletion.completed" and event.details["deletion_id"] == status.id
    ]
    assert [(d["verified_rows_left"], d["rows_deleted"]) for d in completed] == [(0, 4)]


def test_a_deletion_whose_rows_cannot_be_deleted_stops_with_an_error_not_a_loop(
    make_vault: VaultFactory,
) -> None:
    """A delete and the finishing count that disagree (here a trigger that silently keeps
    every row, as an edited database might) end the run with CorruptData, the deletion still
    running: neither reported done nor deleted again for ever (the CLI and the worker's
    slices both looped before)."""
    vault = make_vault()
    for n in range(3):
        vault.ingest_segment(segment(X, n, padded=True))
    vault.flush()
    catalog = vault._catalog
    _keep_rows_on_delete(catalog, keep=True)
    status = vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b", run=False)
    outcome: dict[str, Any] = {}

    def shred() -> None:
        try:
            outcome["status"] = Shredder(catalog, chunk_rows=10).run(status.id)
        except VaultError as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=shred, daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the shred loops on rows it cannot delete"
    error = outcome.get("error")
    assert isinstance(error, CorruptData), outcome
    # SQLite's chunk sees its own delete fall short; PostgreSQL's finishing count, twice in a
    # row, finds the rows a sweep of the whole target could not delete.
    told = (
        "deleted 0 of the 3 range rows chosen"
        if catalog.dialect == "sqlite"
        else f"deletion {status.id}: 3 rows of its target remain"
    )
    assert told in str(error)
    open_states = (Status.PENDING, Status.RUNNING)
    assert catalog.deletions.status(status.id).status in open_states
    # A worker's slices of one chunk each stop the same way.
    with pytest.raises(CorruptData, match=told):
        _resume_in_slices(vault, status.id, slices=5)
    assert catalog.deletions.status(status.id).status in open_states

    # Once the database deletes again, the same deletion finishes, verified.
    _keep_rows_on_delete(catalog, keep=False)
    done = vault.resume_deletion(status.id)
    assert (done.status, done.rows_deleted, done.verified_rows_left) == (Status.DONE, 3, 0)


def _resume_in_slices(vault: Vault, deletion_id: str, *, slices: int) -> None:
    """What a worker does: one chunk per slice, until the deletion is final."""
    for _ in range(slices):
        if vault.resume_deletion(deletion_id, max_chunks=1).status.final:
            return


def _keep_rows_on_delete(catalog: Catalog, *, keep: bool) -> None:
    """A trigger that makes every DELETE of a range row silently keep it (or its removal)."""
    if catalog.dialect == "postgresql":
        statements = (
            [
                "CREATE FUNCTION keep_range_rows() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RETURN NULL; END $$",
                "CREATE TRIGGER keep_range_rows BEFORE DELETE ON recording_byte_range "
                "FOR EACH ROW EXECUTE FUNCTION keep_range_rows()",
            ]
            if keep
            else [
                "DROP TRIGGER keep_range_rows ON recording_byte_range",
                "DROP FUNCTION keep_range_rows()",
            ]
        )
    else:
        statements = [
            "CREATE TRIGGER keep_range_rows BEFORE DELETE ON recording_byte_range "
            "BEGIN SELECT RAISE(IGNORE); END"
            if keep
            else "DROP TRIGGER keep_range_rows"
        ]
    with catalog.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _slip_row(catalog: Catalog, replay: str) -> None:
    """One more row of `replay` straight in the table (what a racing flush used to add)."""
    now = datetime.now(UTC)
    bucket = catalog.replay_bucket(1, replay) or now.date()
    with catalog.engine.begin() as conn:
        conn.execute(
            insert(RecordingByteRange).values(
                project_id=1,
                replay_id=replay,
                segment_id=9,
                part="recording",
                blob_path="r30d/slipped.vsb",
                start=0,
                stop=10,
                wrapped_dek=b"w",
                kek="k",
                key_check=b"c",
                created_at=now,
                expires_at=now + timedelta(days=30),
                expiry_bucket=bucket,
            )
        )


def _bulk_rows(vault: Vault, project: int, rows: int, replays: int) -> None:
    """Catalog rows straight through insert_blob (no sealing), in 5000-row flushes."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4().hex for _ in range(replays)]
    for batch in range(0, rows, 5000):
        path = f"r90d/bulk/{uuid.uuid4().hex}.vsb"
        ranges = [
            RangeRecord(
                project,
                ids[n % replays],
                n,
                "recording",
                path,
                (n - batch) * 10,
                (n - batch) * 10 + 10,
                b"w" * 52,
                "k",
                b"c" * 32,
                now,
                now + timedelta(days=90),
            )
            for n in range(batch, min(batch + 5000, rows))
        ]
        vault._catalog.insert_blob(
            BlobRecord(path, len(ranges) * 10, len(ranges), 90, now, now + timedelta(days=90)),
            ranges,
        )


def test_project_of_200k_rows_shreds_in_chunks_and_resumes(make_vault: VaultFactory) -> None:
    vault = make_vault()
    _bulk_rows(vault, project=7, rows=200_000, replays=300)
    _bulk_rows(vault, project=8, rows=5_000, replays=10)
    shredder = Shredder(vault._catalog, chunk_rows=20_000)
    deletion_id = shredder.request(Scope.PROJECT, 7, requested_by="ops", reason="project removed")
    seen: list[int] = []

    interrupted = shredder.run(
        deletion_id, max_chunks=4, progress=lambda rows, _b: seen.append(rows)
    )
    assert (interrupted.status, interrupted.rows_deleted) == (Status.RUNNING, 80_000)
    assert seen == [20_000, 40_000, 60_000, 80_000]

    resumed = Shredder(vault._catalog, chunk_rows=20_000).run(deletion_id)  # a new process
    assert (resumed.status, resumed.rows_deleted, resumed.replays_deleted) == (
        Status.DONE,
        200_000,
        300,
    )
    assert resumed.bytes_shredded == 200_000 * 10
    with vault._catalog.engine.connect() as conn:
        remaining = dict(
            conn.execute(
                select(RecordingByteRange.project_id, func.count()).group_by(
                    RecordingByteRange.project_id
                )
            ).all()
        )
        dead_blobs = conn.execute(
            select(func.count()).where(Blob.state == BlobState.DEAD.value)
        ).scalar_one()
    assert remaining == {8: 5_000}
    assert dead_blobs == 40


def test_forced_overwrite_zeroes_exactly_the_shredded_ranges(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    for n in range(4):
        vault.ingest_segment(segment(X, n, padded=True))
        vault.ingest_segment(segment(Y, n, padded=True))
    (flushed,) = vault.flush()
    blob = tmp_path / "blobs" / flushed.blob_path
    original = blob.read_bytes()
    with vault._catalog.engine.connect() as conn:
        ranges = conn.execute(
            select(RecordingByteRange.start, RecordingByteRange.stop).where(
                RecordingByteRange.replay_id == X
            )
        ).all()
        expiry = conn.execute(
            select(Blob.expires_at).where(Blob.path == flushed.blob_path)
        ).scalar_one()

    status = vault.shred(
        Scope.REPLAY, 1, replay_id=X, overwrite=True, requested_by="dpo", reason="court order"
    )

    assert status.status is Status.DONE and status.overwrite_done_at is not None
    rewritten = blob.read_bytes()
    assert len(rewritten) == len(original)
    expected = bytearray(original)
    for start, stop in ranges:
        expected[start:stop] = bytes(stop - start)
    assert rewritten == bytes(expected)  # only X's ranges changed, and to zeros
    assert [s[0]["data"]["n"] for s in read_events(make_vault(), 1, Y)] == [0, 1, 2, 3]
    with vault._catalog.engine.connect() as conn:
        assert (
            conn.execute(select(Blob.expires_at).where(Blob.path == flushed.blob_path)).scalar_one()
            == expiry
        )
        assert (
            conn.execute(select(func.count()).where(OverwriteJob.done_at.is_(None))).scalar_one()
            == 0
        )
    assert blob.parent.name == flushed.blob_path.split("/")[-2]  # same retention-class path


class RacingStore(LocalBlobStore):
    """Both overwriters read the blob before either writes: the slower one must retry."""

    def __init__(self, root: Path, barrier: threading.Barrier) -> None:
        super().__init__(root)
        self.barrier = barrier
        self.reads = 0

    def get_versioned(self, path: str) -> tuple[bytes, str]:
        result = super().get_versioned(path)
        self.reads += 1
        if self.reads <= 2:
            self.barrier.wait(timeout=10)
        return result

    def replace(self, path: str, data: Buffers, **kwargs: object) -> str:
        return super().replace(path, data, **kwargs)  # type: ignore[arg-type]


def test_two_concurrent_overwrites_of_one_blob_lose_nothing(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    for n in range(3):
        for replay in (X, Y, Z):
            vault.ingest_segment(segment(replay, n, padded=True))
    (flushed,) = vault.flush()
    deletions = [
        vault.shred(
            Scope.REPLAY, 1, replay_id=r, overwrite=True, requested_by="a", reason="b", run=False
        ).id
        for r in (X, Z)
    ]
    with vault._catalog.engine.connect() as conn:
        doomed = conn.execute(
            select(RecordingByteRange.start, RecordingByteRange.stop).where(
                RecordingByteRange.replay_id.in_([X, Z])
            )
        ).all()
    for deletion_id in deletions:
        assert vault._shredder.run(deletion_id).status is Status.OVERWRITE_PENDING

    store = RacingStore(tmp_path / "blobs", threading.Barrier(2))
    results = []
    threads = [
        threading.Thread(
            target=lambda d=d: results.append(Overwriter(vault._catalog, store).run(deletion_id=d))
        )
        for d in deletions
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 2
    assert sum(r.conflicts_retried for r in results) >= 1  # the race really happened
    data = (tmp_path / "blobs" / flushed.blob_path).read_bytes()
    for start, stop in doomed:
        assert data[start:stop] == bytes(stop - start)
    assert len(read_events(make_vault(), 1, Y)) == 3
    for deletion_id in deletions:
        status = vault.deletion_status(deletion_id)
        assert status.status is Status.DONE and status.overwrite_done_at is not None


def test_retention_expires_rows_and_deletes_local_blobs(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    vault.ingest_segment(segment(X, 0, days=1, padded=True))
    vault.ingest_segment(segment(Y, 0, days=90, padded=True))
    vault.flush()
    assert len(list((tmp_path / "blobs").rglob("*.vsb"))) == 2
    result = expire(vault._catalog, vault._blob_store, now=datetime.now(UTC) + timedelta(days=2))
    assert (result.rows_expired, result.blobs_deleted) == (1, 1)
    assert [p.parts[-4] for p in (tmp_path / "blobs").rglob("*.vsb")] == ["r90d"]
    with pytest.raises(ReplayNotFound):
        read_events(vault, 1, X)
    assert len(read_events(vault, 1, Y)) == 1


def test_gc_collects_orphan_intents_after_the_grace_period_and_dead_blobs(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    crashed = _crashed_flush(vault, "r30d/2026-01-01/00/orphan.vsb", upload=True)
    never_uploaded = _crashed_flush(vault, "r30d/2026-01-01/00/never.vsb", upload=False)
    stray = "r30d/2026-01-01/00/stray.vsb"  # an object no flush of this catalog announced
    vault._blob_store.put(stray, b"not ours")
    foreign = tmp_path / "blobs" / "r30d" / "notes.txt"
    foreign.write_text("an operator's notes beside the blobs")
    vault.ingest_segment(segment(X, 0, padded=True))
    vault.flush()
    vault.ingest_segment(segment(Y, 0, padded=True))
    vault.flush()
    vault.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b")

    fresh = collect(vault._catalog, vault._blob_store, dry_run=True)
    assert fresh.orphans == []  # younger than the grace period: maybe a flush in progress
    assert len(fresh.dead) == 1
    later = lambda: datetime.now(UTC) + timedelta(hours=2)  # noqa: E731
    planned = collect(vault._catalog, vault._blob_store, dry_run=True, clock=later)
    assert planned.orphans == sorted([crashed, never_uploaded])
    assert len(list((tmp_path / "blobs").rglob("*.vsb"))) == 4  # a dry run deletes nothing

    done = collect(vault._catalog, vault._blob_store, clock=later)
    assert (done.orphans, done.dead) == (planned.orphans, planned.dead)  # exactly as listed
    root = tmp_path / "blobs"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert stray in left and "r30d/notes.txt" in left and crashed not in left
    assert len(left) == 3  # the stray object, the notes, Y's blob
    assert len(read_events(vault, 1, Y)) == 1
    assert collect(vault._catalog, vault._blob_store, clock=later) == type(done)()


def test_gc_of_one_store_spares_another_sharing_its_directory(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Two catalogs over one blob directory: each GC deletes only its own orphans and dead."""
    other_catalog = Catalog(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    other_catalog.migrate()
    blobs = LocalBlobStore(tmp_path / "blobs")
    mine = Vault(catalog=catalog, blob_store=blobs, kms=LocalKms(tmp_path / "a.json"))
    theirs = Vault(catalog=other_catalog, blob_store=blobs, kms=LocalKms(tmp_path / "b.json"))
    try:
        for vault, replay in ((mine, X), (theirs, Y), (theirs, Z)):
            vault.ingest_segment(segment(replay, 0, padded=True))
            vault.flush()
        theirs_orphan = _crashed_flush(theirs, "r30d/2026-01-02/00/theirs.vsb", upload=True)
        mine.shred(Scope.REPLAY, 1, replay_id=X, requested_by="a", reason="b")
        later = lambda: datetime.now(UTC) + timedelta(days=2)  # noqa: E731
        done = collect(mine._catalog, blobs, clock=later)
        assert (done.orphans, len(done.dead)) == ([], 1)
        assert (tmp_path / "blobs" / theirs_orphan).exists()  # theirs to collect, not mine
        assert len(read_events(theirs, 1, Y)) == len(read_events(theirs, 1, Z)) == 1
    finally:
        for vault in (mine, theirs):
            vault._reader.close()
        other_catalog.dispose()


def _crashed_flush(vault: Vault, path: str, *, upload: bool) -> str:
    """What a flush that died before recording its rows leaves: its intent, maybe its object."""
    now = datetime.now(UTC)
    vault._catalog.blobs.record_intent(
        path, retention_days=30, created_at=now, expires_at=now + timedelta(days=30)
    )
    if upload:
        vault._blob_store.put(path, b"left by a crashed flush")
    return path


def test_a_flush_whose_intent_gc_collected_fails_and_loses_nothing(
    make_vault: VaultFactory,
) -> None:
    """A flush slower than the grace period: GC takes its intent, so recording its rows must
    fail (they would point at a deleted object); the frames are flushed again under a new path."""
    vault = make_vault()
    store = vault._ingestor._blob_store
    original = store.put
    later = lambda: datetime.now(UTC) + timedelta(hours=2)  # noqa: E731

    def slow_put(path: str, data: Any, **kwargs: Any) -> Any:
        result = original(path, data, **kwargs)
        collect(vault._catalog, vault._blob_store, clock=later)  # GC runs meanwhile
        return result

    store.put = slow_put  # type: ignore[method-assign]
    vault.ingest_segment(segment(X, 0, padded=True))
    with pytest.raises(BackendUnavailable, match="collected as an orphan"):
        vault.flush()
    store.put = original  # type: ignore[method-assign]
    (result,) = vault.flush()
    assert result.inserted == 1
    assert len(read_events(vault, 1, X)) == 1
