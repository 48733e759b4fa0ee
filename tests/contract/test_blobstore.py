"""One contract for every BlobStore backend: the local directory and GCS (via gcp-storage-emulator).

The emulator ignores generation preconditions (ifGenerationMatch), so the assertions that a
create-only write or a conditional replace is *refused by the store* run on the local store
only; GcsBlobStore's handling of the 412 that real GCS answers is tested through a fault proxy
in test_gcs_blobstore.py.
"""

from __future__ import annotations

import os
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.peers.gcs import BUCKET
from vault_store.blobstore import BlobStore, LocalBlobStore, blob_path, blob_store_from_url
from vault_store.blobstore.gcs import GcsBlobStore
from vault_store.errors import (
    AlreadyExists,
    BlobNotFound,
    ConfigError,
    CorruptData,
    GenerationMismatch,
    InvalidInput,
)


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "gcs":
        request.getfixturevalue("gcs_proxy")
        return GcsBlobStore(BUCKET, f"t-{uuid.uuid4().hex}")
    return LocalBlobStore(tmp_path / "store")


@pytest.fixture
def local_store(tmp_path: Path) -> BlobStore:
    """For preconditions the GCS emulator does not enforce (see the module docstring)."""
    return LocalBlobStore(tmp_path / "store")


def test_put_then_ranged_get(store: BlobStore) -> None:
    data = bytes(range(256)) * 40
    store.put("r90d/2026-01-01/00/x.vsb", data)
    assert store.get_range("r90d/2026-01-01/00/x.vsb", 0, 10) == data[:10]
    assert store.get_range("r90d/2026-01-01/00/x.vsb", 1000, 5000) == data[1000:5000]
    assert store.get_range("r90d/2026-01-01/00/x.vsb", 5000, 5000) == b""
    assert store.get("r90d/2026-01-01/00/x.vsb") == data


def test_put_of_chunks_writes_them_back_to_back(store: BlobStore) -> None:
    chunks = [bytes([n % 251]) * (n % 7) for n in range(3000)]  # more than IOV_MAX pieces
    store.put("chunked.vsb", chunks)
    assert store.get("chunked.vsb") == b"".join(chunks)


def test_put_is_create_only(local_store: BlobStore) -> None:
    store = local_store
    store.put("a/b.vsb", b"first")
    with pytest.raises(AlreadyExists):
        store.put("a/b.vsb", b"second")
    assert store.get("a/b.vsb") == b"first"


def test_concurrent_creates_of_one_path_let_exactly_one_win(local_store: BlobStore) -> None:
    store = local_store

    def attempt(n: int) -> bool:
        try:
            store.put("race.vsb", bytes([n]) * 1000)
        except AlreadyExists:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(16)))
    assert wins.count(True) == 1
    assert len(set(store.get("race.vsb"))) == 1


def test_parallel_ranged_gets(store: BlobStore) -> None:
    data = os.urandom(256 * 1024)
    store.put("parallel.vsb", data)
    ranges = [(n * 4096, n * 4096 + 3000) for n in range(64)]
    with ThreadPoolExecutor(8) as pool:
        pieces = list(pool.map(lambda r: store.get_range("parallel.vsb", *r), ranges))
    assert pieces == [data[a:b] for a, b in ranges]


def test_a_large_blob_streams_up_from_its_chunks(store: BlobStore) -> None:
    # Larger than one upload request (8 MiB): GCS takes it as a resumable upload in chunks.
    chunks = [os.urandom(1 << 20) for _ in range(9)] + [b"tail"]
    store.put("large.vsb", chunks)
    joined = b"".join(chunks)
    assert store.get_range("large.vsb", len(joined) - 10, len(joined)) == joined[-10:]
    assert store.get("large.vsb") == joined


def test_replace_at_the_read_generation_rewrites_and_moves_the_generation(
    store: BlobStore,
) -> None:
    store.put("over.vsb", b"secret-bytes", expires_at=datetime(2027, 1, 1, tzinfo=UTC))
    data, generation = store.get_versioned("over.vsb")
    assert data == b"secret-bytes"
    new_generation = store.replace(
        "over.vsb",
        b"\0" * 12,
        if_generation=generation,
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert new_generation != generation
    assert store.get_versioned("over.vsb") == (b"\0" * 12, new_generation)


def test_replace_at_a_stale_generation_is_refused(local_store: BlobStore) -> None:
    store = local_store
    store.put("over.vsb", b"one")
    _, stale = store.get_versioned("over.vsb")
    store.replace("over.vsb", b"two", if_generation=stale, expires_at=None)
    with pytest.raises(GenerationMismatch):
        store.replace("over.vsb", b"three", if_generation=stale, expires_at=None)
    with pytest.raises(GenerationMismatch):
        store.delete("over.vsb", if_generation=stale)
    assert store.get("over.vsb") == b"two"


def test_listing_carries_the_generation_a_delete_can_be_held_to(store: BlobStore) -> None:
    store.put("listed.vsb", b"x")
    (info,) = store.list("listed")
    assert info.generation is not None
    store.delete("listed.vsb", if_generation=info.generation)
    assert list(store.list("listed")) == []


def test_range_past_the_end_is_a_corruption_not_a_short_answer(store: BlobStore) -> None:
    store.put("short.vsb", b"0123456789")
    with pytest.raises(CorruptData):
        store.get_range("short.vsb", 5, 11)


def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.get_range("nope.vsb", 0, 1)
    with pytest.raises(BlobNotFound):
        store.delete("nope.vsb")


def test_delete_and_list_by_prefix(store: BlobStore) -> None:
    for path in (
        "r30d/2026-01-01/00/a.vsb",
        "r30d/2026-01-02/00/b.vsb",
        "r90d/2026-01-01/00/c.vsb",
    ):
        store.put(path, b"x" * 3)
    assert [b.path for b in store.list("r30d/")] == [
        "r30d/2026-01-01/00/a.vsb",
        "r30d/2026-01-02/00/b.vsb",
    ]
    assert all(b.size == 3 for b in store.list())
    store.delete("r30d/2026-01-01/00/a.vsb")
    assert [b.path for b in store.list()] == [
        "r30d/2026-01-02/00/b.vsb",
        "r90d/2026-01-01/00/c.vsb",
    ]


@pytest.mark.parametrize("path", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_paths_cannot_escape_the_store(store: BlobStore, path: str) -> None:
    with pytest.raises(InvalidInput):
        store.put(path, b"x")


def test_blob_paths_are_partitioned_by_retention_and_date_with_a_random_name() -> None:
    moment = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
    first, second = blob_path(90, moment), blob_path(90, moment)
    assert first.startswith("r90d/2026-11-24/13/") and first.endswith(".vsb")
    assert first != second


def test_local_store_leaves_no_temporary_files_and_writes_private_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put("x/y.vsb", b"data")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y.vsb"]
    assert stat.S_IMODE(os.stat(tmp_path / "x" / "y.vsb").st_mode) == 0o600


def test_store_urls(tmp_path: Path, gcs_proxy: object) -> None:
    store = blob_store_from_url(f"file://{tmp_path}/blobs")
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "blobs"
    gcs = blob_store_from_url("gs://my-bucket/some/prefix/")
    assert isinstance(gcs, GcsBlobStore)
    assert (gcs.bucket.name, gcs.prefix) == ("my-bucket", "some/prefix/")
    for bad in ("file://relative/path", "s3://bucket/x", "file:relative", "gs:///prefix"):
        with pytest.raises(ConfigError):
            blob_store_from_url(bad)
