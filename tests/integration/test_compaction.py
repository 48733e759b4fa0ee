"""Replay compaction end to end: reads, deletes, overwrites, retention and crashes stay true."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from tests.builders import replay_id, segment
from tests.conftest import VaultFactory
from tests.integration.helpers import read_events, run
from tests.peers.gcs import BUCKET, FaultProxy
from vault_store import Vault
from vault_store.blobstore import Buffers, LocalBlobStore
from vault_store.blobstore.gcs import GcsBlobStore
from vault_store.catalog import Catalog
from vault_store.catalog.models import Blob, OverwriteJob, RecordingByteRange, SupersededRange
from vault_store.catalog.records import BlobState, RangeRecord, Scope
from vault_store.core.policies import CompactionPolicy, FlushPolicy
from vault_store.errors import BackendUnavailable
from vault_store.settings import Settings

REPLAYS = 3
SEGMENTS = 30


def _spread(
    vault: Vault, *, replays: int = REPLAYS, segments: int = SEGMENTS, first: int = 0
) -> list[str]:
    """Replays live at once: each flush holds one segment of each, as under real traffic."""
    ids = [replay_id(first + n) for n in range(replays)]
    for n in range(segments):
        for replay in ids:
            vault.ingest_segment(segment(replay, n, padded=True))
        vault.flush()
    return ids


def _rows(catalog: Catalog) -> list[RangeRecord]:
    rows: list[RangeRecord] = []
    for project, replay in _replays(catalog):
        rows += catalog.replay_ranges(project, replay, limit=100_000)
    return rows


def _replays(catalog: Catalog) -> list[tuple[int, str]]:
    with catalog.engine.connect() as conn:
        return sorted(
            (int(p), str(r))
            for p, r in conn.execute(
                select(RecordingByteRange.project_id, RecordingByteRange.replay_id).distinct()
            )
        )


def _store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.vsb")}


def _blob_states(catalog: Catalog) -> dict[str, str]:
    with catalog.engine.connect() as conn:
        return {path: state for path, state in conn.execute(select(Blob.path, Blob.state))}


@pytest.fixture
def spread_vault(make_vault: VaultFactory) -> Vault:
    return make_vault(flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None))


def test_a_compacted_hour_long_replay_reads_whole_in_two_gets(spread_vault: Vault) -> None:
    """A 720-segment replay (the SDK's 60 minutes) spread over 180 blobs reads in two ranged
    GETs once compacted (its first page, then the rest): the reader fetches the ranges of
    consecutive pages together, not one GET per 50-segment page."""
    vault = spread_vault
    (replay,) = ids = [replay_id(7)]
    for n in range(720):
        vault.ingest_segment(segment(replay, n, padded=True))
        if n % 4 == 3:
            vault.flush()
    start = vault.read_counters().gets
    before = b"".join(vault.read_recording(1, replay))
    assert vault.read_counters().gets - start >= 180  # one per blob at least
    assert vault.compact(idle_seconds=0).replays_compacted == len(ids)
    start = vault.read_counters().gets
    assert b"".join(vault.read_recording(1, replay)) == before
    assert vault.read_counters().gets - start == 2
    assert len(orjson.loads(before)) == 720


def test_a_compacted_replay_reads_back_byte_exact_in_fewer_gets(
    spread_vault: Vault, catalog: Catalog, tmp_path: Path
) -> None:
    vault = spread_vault
    ids = _spread(vault)
    before = {}
    gets_before = {}
    for replay in ids:
        start = vault.read_counters().gets
        before[replay] = b"".join(vault.read_recording(1, replay))
        gets_before[replay] = vault.read_counters().gets - start
    keys_before = {(r.replay_id, r.segment_id, r.part): r.wrapped_dek for r in _rows(catalog)}
    assert all(gets == SEGMENTS for gets in gets_before.values())

    result = vault.compact(idle_seconds=0)
    assert result.replays_compacted == REPLAYS
    assert result.blobs_written == 1
    assert result.rows_moved == len(keys_before)
    # One source blob per flush, each read once for all three replays.
    assert result.source_gets == SEGMENTS
    for replay in ids:
        start = vault.read_counters().gets
        assert b"".join(vault.read_recording(1, replay)) == before[replay]
        assert vault.read_counters().gets - start == 1
    # No key was touched: every row carries the wrapped key it had.
    rows = _rows(catalog)
    assert {(r.replay_id, r.segment_id, r.part): r.wrapped_dek for r in rows} == keys_before
    (compacted,) = {r.blob_path for r in rows}
    # Contiguous in (replay, segment, part) order.
    ordered = sorted(rows, key=lambda r: r.start)
    assert [(r.replay_id, r.segment_id) for r in ordered] == sorted(
        (r.replay_id, r.segment_id) for r in rows
    )
    assert all(a.stop == b.start for a, b in itertools.pairwise(ordered))

    # The sources are dead; GC (after its grace) deletes them and the replays still read.
    assert vault.collect_garbage(grace=timedelta(hours=1)).dead == []
    gc = vault.collect_garbage(grace=timedelta(0))
    assert len(gc.dead) == SEGMENTS
    assert set(_store_files(tmp_path / "blobs")) == {compacted}
    for replay in ids:
        assert b"".join(vault.read_recording(1, replay)) == before[replay]
    stats = vault.compaction_stats()
    assert (stats.compacted_blobs, stats.superseded_ranges) == (1, 0)

    # Idempotent: nothing left to compact.
    again = vault.compact(idle_seconds=0)
    assert (again.replays_finished, again.blobs_written) == (0, 0)


def test_only_finished_replays_are_compacted_and_a_late_segment_is_compacted_again(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    now = [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)]
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None),
        clock=lambda: now[0],
    )
    ids = _spread(vault, replays=2, segments=5)
    now[0] += timedelta(minutes=10)
    assert vault.compact().replays_finished == 0  # idle only 10 minutes
    now[0] += timedelta(minutes=25)
    assert vault.compact().replays_compacted == 2
    vault.ingest_segment(segment(ids[0], 7, padded=True))
    vault.flush()
    now[0] += timedelta(hours=1)
    again = vault.compact()
    assert (again.replays_compacted, again.rows_moved) == (1, len(_rows_of(catalog, ids[0])))
    assert len({r.blob_path for r in _rows_of(catalog, ids[0])}) == 1
    assert [len(events) for events in read_events(vault, 1, ids[0])] == [1] * 6


def _rows_of(catalog: Catalog, replay: str) -> list[RangeRecord]:
    return catalog.replay_ranges(1, replay, limit=100_000)


def test_retention_is_never_extended_beyond_the_spread_nor_shortened(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    now = [datetime(2026, 12, 7, 0, 0, tzinfo=UTC)]
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None),
        clock=lambda: now[0],
    )
    early = _spread(vault, replays=2, segments=3)
    now[0] += timedelta(hours=13)  # past the 12-hour spread of one compacted blob
    late = _spread(vault, replays=2, segments=3, first=10)
    expiries = {(r.replay_id, r.segment_id, r.part): r.expires_at for r in _rows(catalog)}
    now[0] += timedelta(hours=2)
    result = vault.compact()
    assert (result.replays_compacted, result.blobs_written) == (4, 2)
    rows = _rows(catalog)
    # Every row keeps its own expiry: nothing expires early.
    assert {(r.replay_id, r.segment_id, r.part): r.expires_at for r in rows} == expiries
    with catalog.engine.connect() as conn:
        blobs = {
            path: expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires
            for path, expires in conn.execute(
                select(Blob.path, Blob.expires_at).where(Blob.compacted.is_(True))
            )
        }
    for group in (early, late):
        (path,) = {r.blob_path for r in rows if r.replay_id in group}
        group_expiries = [r.expires_at for r in rows if r.replay_id in group]
        # The blob lives exactly as long as its last row, and its rows expire within the spread.
        assert blobs[path] == max(group_expiries)
        assert max(group_expiries) - min(group_expiries) <= timedelta(hours=12)
    # Expiry removes a compacted blob with its last row, not before.
    (late_blob,) = {r.blob_path for r in rows if r.replay_id in late}
    (early_blob,) = {r.blob_path for r in rows if r.replay_id in early}
    now[0] = blobs[late_blob] - timedelta(seconds=1)
    vault.expire()
    states = _blob_states(catalog)
    assert (states[early_blob], states[late_blob]) == (BlobState.DELETED.value, "live")
    assert [len(events) for events in read_events(vault, 1, late[0])] == [1, 1, 1]
    now[0] = blobs[late_blob]
    vault.expire()
    assert _blob_states(catalog)[late_blob] == BlobState.DELETED.value


class _Failing(LocalBlobStore):
    """A local store whose `put` fails (before or after storing) while armed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fail: str | None = None

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        if self.fail == "before":
            raise BackendUnavailable("injected", backend="test", op="put")
        super().put(path, data, expires_at=expires_at, custom_time=custom_time)
        if self.fail == "after":
            raise BackendUnavailable("injected: answer lost", backend="test", op="put")


@pytest.mark.parametrize("step", ["upload", "answer", "commit"])
def test_a_failure_at_each_step_leaves_every_replay_readable_and_at_most_an_orphan(
    make_vault: VaultFactory,
    catalog: Catalog,
    tmp_path: Path,
    step: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _Failing(tmp_path / "blobs")
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None),
        blob_store=store,
    )
    ids = _spread(vault, replays=2, segments=6)
    before = {replay: b"".join(vault.read_recording(1, replay)) for replay in ids}
    rows_before = _rows(catalog)
    files_before = set(_store_files(tmp_path / "blobs"))
    if step == "upload":
        store.fail = "before"
    elif step == "answer":
        store.fail = "after"
    else:

        def broken(*_args: object, **_kwargs: object) -> None:
            raise BackendUnavailable("injected", backend="catalog", op="compact")

        monkeypatch.setattr(catalog.compaction, "commit", broken)
    with pytest.raises(BackendUnavailable):
        vault.compact(idle_seconds=0)
    store.fail = None
    monkeypatch.undo()
    assert _rows(catalog) == rows_before
    for replay in ids:
        assert b"".join(vault.read_recording(1, replay)) == before[replay]
    # At most one orphan: a pending intent, which GC removes with its object (if any).
    pending = [p for p, s in _blob_states(catalog).items() if s == BlobState.PENDING.value]
    assert len(pending) == 1
    gc = vault.collect_garbage(grace=timedelta(0))
    assert gc.orphans == pending and gc.dead == []
    assert set(_store_files(tmp_path / "blobs")) == files_before
    # And the next run compacts normally.
    assert vault.compact(idle_seconds=0).replays_compacted == 2
    for replay in ids:
        assert b"".join(vault.read_recording(1, replay)) == before[replay]


def test_a_replay_deleted_during_the_copy_leaves_no_row_and_no_new_copy(
    make_vault: VaultFactory, catalog: Catalog, tmp_path: Path
) -> None:
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None)
    )

    class DeletingStore(LocalBlobStore):
        def put(self, path: str, data: Buffers, **kwargs: datetime | None) -> None:
            super().put(path, data, **kwargs)
            if "custom_time" in kwargs and kwargs["custom_time"] is not None:
                # The shred is requested while the compacted blob is uploaded.
                vault.shred(Scope.REPLAY, 1, replay_id=victim, requested_by="t", reason="t")

    ids = _spread(vault, replays=2, segments=4)
    victim, other = ids
    vault._compactor._store = DeletingStore(tmp_path / "blobs")
    files_before = set(_store_files(tmp_path / "blobs"))
    frames = {
        r.segment_id: LocalBlobStore(tmp_path / "blobs").get_range(r.blob_path, r.start, r.stop)
        for r in _rows_of(catalog, victim)
    }
    result = vault.compact(idle_seconds=0)
    assert (result.replays_raced, result.blobs_written, result.replays_compacted) == (1, 0, 0)
    assert _rows_of(catalog, victim) == []
    # The compacted object is gone, its intent closed; nothing new is in the store.
    assert set(_store_files(tmp_path / "blobs")) == files_before
    assert BlobState.PENDING.value not in _blob_states(catalog).values()
    assert frames and all(len(f) > 20 for f in frames.values())
    # The survivor is compacted on the next run.
    vault._compactor._store = LocalBlobStore(tmp_path / "blobs")
    assert vault.compact(idle_seconds=0).replays_compacted == 1
    assert len(read_events(vault, 1, other)) == 4


def test_a_forced_overwrite_zeroes_the_compacted_copy_and_the_uncollected_sources(
    spread_vault: Vault, catalog: Catalog, tmp_path: Path
) -> None:
    vault = spread_vault
    victim, *others = _spread(vault)
    store = LocalBlobStore(tmp_path / "blobs")
    frames = [store.get_range(r.blob_path, r.start, r.stop) for r in _rows_of(catalog, victim)]
    others_before = {r: b"".join(vault.read_recording(1, r)) for r in others}
    assert vault.compact(idle_seconds=0).replays_compacted == REPLAYS
    # Both copies exist now: the compacted one and the sources GC has not collected yet.
    files = b"".join(_store_files(tmp_path / "blobs").values())
    assert all(files.count(frame) == 2 for frame in frames)
    status = vault.shred(
        Scope.REPLAY, 1, replay_id=victim, requested_by="t", reason="t", overwrite=True
    )
    assert status.status.value == "done"
    with catalog.engine.connect() as conn:
        zeroed = set(conn.execute(select(OverwriteJob.blob_path).distinct()).scalars())
    assert len(zeroed) == SEGMENTS + 1  # every source, and the compacted blob
    files = b"".join(_store_files(tmp_path / "blobs").values())
    assert not any(frame in files for frame in frames)
    for replay in others:
        assert b"".join(vault.read_recording(1, replay)) == others_before[replay]
    # The sources go at GC; their superseded ranges are then recorded as collected.
    assert vault.compaction_stats().superseded_ranges == SEGMENTS * REPLAYS
    vault.collect_garbage(grace=timedelta(0))
    with catalog.engine.connect() as conn:
        left = conn.execute(select(SupersededRange.collected_at)).scalars().all()
    assert len(left) == SEGMENTS * REPLAYS and None not in left
    assert vault.compaction_stats().superseded_ranges == 0


def test_the_report_counts_superseded_copies_until_gc_removes_them(
    spread_vault: Vault, catalog: Catalog
) -> None:
    vault = spread_vault
    victim, *_ = _spread(vault)
    assert vault.compact(idle_seconds=0).replays_compacted == REPLAYS
    vault.shred(Scope.REPLAY, 1, replay_id=victim, requested_by="t", reason="t")
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)

    def copies() -> list[dict[str, object]]:
        (entry,) = vault.deletion_report(since=since, until=until)["deletions"]
        return [c for c in entry["copies_may_remain"] if c["holder"] == "compaction's source blobs"]

    (held,) = copies()
    assert held["ranges"] == SEGMENTS
    vault.collect_garbage(grace=timedelta(0))
    assert copies() == []


def test_on_gcs_the_compacted_object_counts_its_retention_from_its_sources(
    make_vault: VaultFactory, catalog: Catalog, gcs_proxy: FaultProxy
) -> None:
    """GCS lifecycle rules delete by days since custom time: a compacted object's is its
    earliest row's creation (as its sources'), never the compaction's, so the backstop rule
    never keeps a frame past its own expiry plus the margin."""
    store = GcsBlobStore(BUCKET, f"compact-{uuid.uuid4().hex}/")
    now = [datetime(2026, 12, 7, 8, 0, tzinfo=UTC)]
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None),
        blob_store=store,
        clock=lambda: now[0],
    )
    ids = []
    for step in range(3):
        ids += _spread(vault, replays=1, segments=2, first=step)
        now[0] += timedelta(hours=1)
    before = {replay: b"".join(vault.read_recording(1, replay)) for replay in ids}
    first_created = min(r.created_at for r in _rows(catalog))
    now[0] += timedelta(hours=5)
    result = vault.compact()
    (path,) = result.blob_paths
    stored = store.bucket.get_blob(store.prefix + path)
    assert stored is not None
    assert stored.custom_time == first_created
    last_expiry = max(r.expires_at for r in _rows(catalog))
    assert stored.metadata == {"vault-store-expires-at": last_expiry.isoformat()}
    for replay in ids:
        assert b"".join(vault.read_recording(1, replay)) == before[replay]


def test_a_copy_that_outlasts_the_gc_grace_leaves_no_object_behind(
    make_vault: VaultFactory, catalog: Catalog, tmp_path: Path
) -> None:
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None)
    )

    class SlowStore(LocalBlobStore):
        def put(self, path: str, data: Buffers, **kwargs: datetime | None) -> None:
            # GC runs while this upload is under way and takes the (pending) intent.
            vault.collect_garbage(grace=timedelta(0))
            super().put(path, data, **kwargs)

    ids = _spread(vault, replays=2, segments=4)
    before = {replay: b"".join(vault.read_recording(1, replay)) for replay in ids}
    rows_before = _rows(catalog)
    files_before = set(_store_files(tmp_path / "blobs"))
    vault._compactor._store = SlowStore(tmp_path / "blobs")
    with pytest.raises(BackendUnavailable):
        vault.compact(idle_seconds=0)
    assert _rows(catalog) == rows_before
    assert set(_store_files(tmp_path / "blobs")) == files_before
    for replay in ids:
        assert b"".join(vault.read_recording(1, replay)) == before[replay]


def test_the_compact_command_dry_run_then_for_real(home: dict[str, str]) -> None:
    settings = Settings.from_env(home)
    with Vault.from_settings(settings, pipeline_flushes=False) as vault:
        ids = _spread(vault, replays=2, segments=5)
        before = {replay: b"".join(vault.read_recording(1, replay)) for replay in ids}
    dry = run(home, "compact", "--idle-seconds", "0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = orjson.loads(dry.stdout)
    assert (planned["dry_run"], planned["blobs_written"], planned["rows_moved"]) == (True, 1, 10)
    assert dry.stderr == b""  # no progress with --json
    assert orjson.loads(run(home, "stats", "--json").stdout)["compacted_blobs"] == 0
    # Not finished yet under the default idle time.
    waiting = orjson.loads(run(home, "compact", "--json").stdout)
    assert waiting["replays_finished"] == 0
    done = run(home, "compact", "--idle-seconds", "0")
    assert done.returncode == 0, done.stderr
    assert b"compacted 2 of 2 finished replay(s) into 1 blob(s)" in done.stdout
    stats = orjson.loads(run(home, "stats", "--json").stdout)
    assert (stats["compacted_blobs"], stats["superseded_ranges"]) == (1, 10)
    with Vault.from_settings(settings) as vault:
        for replay in ids:
            assert b"".join(vault.read_recording(1, replay)) == before[replay]


def test_compacted_blobs_stop_at_the_target_size_and_never_split_a_replay(
    make_vault: VaultFactory, catalog: Catalog
) -> None:
    vault = make_vault(
        flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None),
        compaction_policy=CompactionPolicy(target_bytes=1),  # every replay is over the target
    )
    ids = _spread(vault, replays=3, segments=4)
    other_class = replay_id(50)
    for n in range(4):
        vault.ingest_segment(segment(other_class, n, days=90, padded=True))
    vault.flush()
    result = vault.compact(idle_seconds=0)
    assert (result.replays_compacted, result.blobs_written) == (4, 4)
    paths = {replay: {r.blob_path for r in _rows_of(catalog, replay)} for replay in ids}
    assert all(len(p) == 1 for p in paths.values())
    assert len(set.union(*paths.values())) == 3
    (ninety,) = {r.blob_path for r in _rows_of(catalog, other_class)}
    assert ninety.startswith("r90d/")
    # With room for everything, one blob per retention class.
    for replay in [*ids, other_class]:
        vault.ingest_segment(
            segment(replay, 9, days=90 if replay == other_class else 30, padded=True)
        )
    vault.flush()
    roomy = make_vault(compaction_policy=CompactionPolicy())
    again = roomy.compact(idle_seconds=0)
    assert (again.replays_compacted, again.blobs_written) == (4, 2)


def test_a_forced_project_deletion_zeroes_every_copy_compaction_left(
    spread_vault: Vault, catalog: Catalog, tmp_path: Path
) -> None:
    vault = spread_vault
    ids = _spread(vault, replays=2, segments=5)
    store = LocalBlobStore(tmp_path / "blobs")
    frames = [
        store.get_range(r.blob_path, r.start, r.stop)
        for replay in ids
        for r in _rows_of(catalog, replay)
    ]
    assert vault.compact(idle_seconds=0).replays_compacted == 2
    status = vault.shred(Scope.PROJECT, 1, requested_by="t", reason="t", overwrite=True)
    assert status.status.value == "done"
    everything = b"".join(_store_files(tmp_path / "blobs").values())
    assert frames and not any(frame in everything for frame in frames)
