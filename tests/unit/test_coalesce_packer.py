"""Pure planning: range coalescing and per-retention-class packing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_store.core.coalesce import plan_fetches
from vault_store.core.crypto import FrameIdentity
from vault_store.core.packer import Packer, SealedSegment, pack
from vault_store.errors import ConfigError
from vault_store.kms import WrappedKey
from vault_store.settings import FlushPolicy


def test_adjacent_ranges_of_one_blob_become_one_fetch() -> None:
    ranges = [("a", 0, 10), ("a", 10, 25), ("a", 25, 40)]
    (fetch,) = plan_fetches(ranges, gap=0, max_span=1000)
    assert (fetch.blob_path, fetch.start, fetch.stop, fetch.members) == ("a", 0, 40, (0, 1, 2))


def test_gap_threshold_decides_merging() -> None:
    ranges = [("a", 0, 10), ("a", 30, 40)]
    assert len(plan_fetches(ranges, gap=19, max_span=1000)) == 2
    assert len(plan_fetches(ranges, gap=20, max_span=1000)) == 1


def test_max_span_splits_and_blobs_never_merge() -> None:
    ranges = [("a", 0, 60), ("b", 60, 70), ("a", 60, 120)]
    fetches = plan_fetches(ranges, gap=100, max_span=100)
    assert sorted((f.blob_path, f.start, f.stop) for f in fetches) == [
        ("a", 0, 60),
        ("a", 60, 120),
        ("b", 60, 70),
    ]


ranges_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=5000),
        st.integers(min_value=1, max_value=300),
    ).map(lambda t: (t[0], t[1], t[1] + t[2])),
    min_size=1,
    max_size=60,
)


@given(ranges=ranges_strategy, gap=st.integers(0, 500), max_span=st.integers(1, 4000))
@settings(max_examples=200, deadline=None)
def test_every_range_is_covered_by_exactly_one_fetch_of_its_blob(
    ranges: list[tuple[str, int, int]], gap: int, max_span: int
) -> None:
    fetches = plan_fetches(ranges, gap=gap, max_span=max_span)
    members = sorted(m for f in fetches for m in f.members)
    assert members == list(range(len(ranges)))
    for fetch in fetches:
        for member in fetch.members:
            blob, start, stop = ranges[member]
            assert blob == fetch.blob_path
            assert fetch.start <= start and stop <= fetch.stop
        assert fetch.stop - fetch.start <= max(
            max_span, *(ranges[m][2] - ranges[m][1] for m in fetch.members)
        )


def _sealed(replay: str, segment: int, size: int = 10, days: int = 90) -> SealedSegment:
    return SealedSegment(
        identity=FrameIdentity(1, replay * 32, segment),
        header=bytes([segment % 256]),
        ciphertext=bytes([segment % 256]) * (size - 1),
        wrapped=WrappedKey(b"w", "k"),
        key_check=b"c" * 32,
        retention_days=days,
        plain_bytes=size,
    )


def test_pack_groups_each_replay_contiguously_with_exact_offsets() -> None:
    packed = pack([_sealed("b", 1), _sealed("a", 2), _sealed("b", 0), _sealed("a", 1, size=5)])
    order = [(s.identity.replay_id[0], s.identity.segment_id) for s in packed.segments]
    assert order == [("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    for segment, (start, stop) in zip(packed.segments, packed.offsets, strict=True):
        assert packed.data[start:stop] == segment.frame


def test_flush_thresholds_by_size_count_and_age() -> None:
    packer = Packer(FlushPolicy(max_bytes=100, max_segments=3, max_age_seconds=10))
    packer.add(_sealed("a", 0, size=40), now=0)
    assert packer.due(now=1) == []
    packer.add(_sealed("a", 1, size=70), now=1)
    assert packer.due(now=1) == [90]  # 110 bytes >= 100
    packer.take(90)
    for n in range(3):
        packer.add(_sealed("a", n, size=1), now=2)
    assert packer.due(now=2) == [90]  # 3 segments
    packer.take(90)
    packer.add(_sealed("a", 0, size=1), now=5)
    assert packer.due(now=14.9) == []
    assert packer.due(now=15) == [90]  # oldest is 10 s old


def test_one_buffer_per_retention_class_and_duplicates_ignored() -> None:
    packer = Packer(FlushPolicy())
    assert packer.add(_sealed("a", 0, days=30), now=0)
    assert packer.add(_sealed("a", 0, days=90), now=0)
    assert not packer.add(_sealed("a", 0, days=30), now=0)
    assert sorted(packer.pending()) == [30, 90]
    assert [s.retention_days for s in packer.take(30)] == [30]


def test_restore_puts_failed_frames_back_ahead_of_newer_ones() -> None:
    packer = Packer(FlushPolicy())
    packer.add(_sealed("a", 0), now=0)
    failed = packer.take(90)
    packer.add(_sealed("a", 1), now=1)
    packer.restore(failed, now=2)
    assert [s.identity.segment_id for s in packer.take(90)] == [0, 1]


def test_a_bytes_only_policy_flushes_by_size_alone() -> None:
    policy = FlushPolicy.bytes_only(100_000)
    assert (policy.max_bytes, policy.max_segments, policy.max_age_seconds) == (100_000, None, None)
    packer = Packer(policy)
    for n in range(10_000):
        packer.add(_sealed("a", n, size=1), now=0)
    assert packer.due(now=10**9) == []  # no count and no age limit, however many and old
    packer.add(_sealed("b", 0, size=90_000), now=0)
    assert packer.due(now=0) == [90]


def test_flush_limits_are_validated_and_none_means_no_such_limit() -> None:
    with pytest.raises(ConfigError):
        FlushPolicy(max_bytes=0)
    with pytest.raises(ConfigError):
        FlushPolicy(max_segments=0)
    with pytest.raises(ConfigError):
        FlushPolicy(max_age_seconds=0.0)
    with pytest.raises(ConfigError):
        FlushPolicy.bytes_only(0)
    assert FlushPolicy(max_segments=None).max_age_seconds == 10.0
