"""GcsBlobStore's own rules, against gcp-storage-emulator behind a fault-injecting proxy.

The proxy answers chosen requests itself, the way real GCS would: 429 and 503 (retried), a stall
past the request timeout (retried), 412 for a failed precondition (which the emulator never
sends), 403 (not retried).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.peers.gcs import BUCKET, Fault, FaultProxy
from vault_store import Catalog, LocalKms, Scope, Vault
from vault_store.blobstore.gcs import EXPIRES_AT_KEY, GcsBlobStore
from vault_store.core.message import Segment
from vault_store.errors import (
    AlreadyExists,
    BackendError,
    BackendUnavailable,
    GenerationMismatch,
)
from vault_store.services.gc import collect

UPLOAD = "/upload/storage/v1/"


@pytest.fixture
def store(gcs_proxy: FaultProxy) -> GcsBlobStore:
    return GcsBlobStore(BUCKET, f"t-{uuid.uuid4().hex}", retry_deadline=3.0, request_timeout=1.0)


def uploads(proxy: FaultProxy) -> int:
    return sum(1 for method, path in proxy.seen if method == "POST" and UPLOAD in path)


def test_uploads_are_create_only_requests(store: GcsBlobStore, gcs_proxy: FaultProxy) -> None:
    store.put("a.vsb", b"x")
    (upload,) = [path for method, path in gcs_proxy.seen if UPLOAD in path]
    assert "ifGenerationMatch=0" in upload


def test_429_and_503_are_retried_until_the_upload_lands(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    gcs_proxy.inject(Fault("POST", UPLOAD, 429), Fault("POST", UPLOAD, 503))
    store.put("retried.vsb", b"payload")
    assert uploads(gcs_proxy) == 3
    assert store.get("retried.vsb") == b"payload"


def test_a_stalled_request_times_out_and_is_retried(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    store.put("slow.vsb", b"0123456789")
    gcs_proxy.inject(Fault("GET", "slow.vsb", 503, stall_seconds=2.0))
    assert store.get_range("slow.vsb", 2, 5) == b"234"
    assert sum(1 for method, path in gcs_proxy.seen if method == "GET" and "slow.vsb" in path) == 2


def test_retries_are_bounded_then_the_backend_is_unavailable(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    store.put("down.vsb", b"0123456789")
    gcs_proxy.inject(*[Fault("GET", "down.vsb", 503) for _ in range(200)])
    with pytest.raises(BackendUnavailable) as caught:
        store.get_range("down.vsb", 0, 4)
    assert (caught.value.backend, caught.value.op) == ("gcs", "get_range")
    attempts = sum(1 for _, path in gcs_proxy.seen if "down.vsb" in path) - 1
    assert 2 <= attempts < 200


def test_a_refused_precondition_on_put_is_already_exists(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    store.put("taken.vsb", b"first")
    gcs_proxy.inject(Fault("POST", UPLOAD, 412))
    with pytest.raises(AlreadyExists):
        store.put("taken.vsb", b"second")
    assert store.get("taken.vsb") == b"first"


def test_a_retry_that_meets_its_own_earlier_upload_succeeds(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    # The first upload lands but its answer is lost (503); the retry meets the object (412).
    gcs_proxy.inject(Fault("POST", UPLOAD, 503, after_forwarding=True), Fault("POST", UPLOAD, 412))
    store.put("lost-answer.vsb", [b"part one,", b" part two"])
    assert store.get("lost-answer.vsb") == b"part one, part two"


def test_a_refused_precondition_on_replace_is_a_generation_mismatch(
    store: GcsBlobStore, gcs_proxy: FaultProxy
) -> None:
    store.put("cas.vsb", b"abc")
    _, generation = store.get_versioned("cas.vsb")
    gcs_proxy.inject(Fault("POST", UPLOAD, 412))
    with pytest.raises(GenerationMismatch):
        store.replace("cas.vsb", b"\0\0\0", if_generation=generation, expires_at=None)
    replace_upload = [p for m, p in gcs_proxy.seen if UPLOAD in p][-1]
    assert f"ifGenerationMatch={generation}" in replace_upload


def test_permission_denied_is_not_retried(store: GcsBlobStore, gcs_proxy: FaultProxy) -> None:
    gcs_proxy.inject(Fault("POST", UPLOAD, 403))
    with pytest.raises(BackendError, match="IAM") as caught:
        store.put("forbidden.vsb", b"x")
    assert not isinstance(caught.value, BackendUnavailable)
    assert uploads(gcs_proxy) == 1


def test_objects_carry_expiry_and_custom_time_and_a_rewrite_keeps_them(
    store: GcsBlobStore,
) -> None:
    expires = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    before = datetime.now(UTC)
    store.put("aged.vsb", b"bytes", expires_at=expires)
    stored = store.bucket.get_blob(store.prefix + "aged.vsb")
    assert stored is not None and stored.custom_time is not None
    assert before - timedelta(seconds=1) <= stored.custom_time <= datetime.now(UTC)
    assert stored.metadata == {EXPIRES_AT_KEY: expires.isoformat()}
    _, generation = store.get_versioned("aged.vsb")
    store.replace("aged.vsb", b"\0" * 5, if_generation=generation, expires_at=None)
    rewritten = store.bucket.get_blob(store.prefix + "aged.vsb")
    assert rewritten is not None
    assert rewritten.custom_time == stored.custom_time
    assert rewritten.metadata == stored.metadata


def test_gc_on_a_shared_bucket_prefix_deletes_only_its_own_orphans_and_dead(
    store: GcsBlobStore, tmp_path: Path
) -> None:
    """Two catalogs writing under one bucket prefix, and a foreign object beside their blobs:
    each GC deletes only what its catalog recorded an intent for (and its dead blobs)."""
    catalogs = [Catalog(f"sqlite:///{tmp_path / f'{name}.sqlite3'}") for name in "ab"]
    vaults = []
    for n, catalog in enumerate(catalogs):
        catalog.migrate()
        vaults.append(
            Vault(catalog=catalog, blob_store=store, kms=LocalKms(tmp_path / f"{n}.json"))
        )
    mine, theirs = vaults
    store.put("foreign/readme.txt", b"not a blob of either store")
    try:
        for vault, replay in ((mine, "a" * 32), (theirs, "b" * 32)):
            vault.ingest_segment(Segment(1, replay, 0, b'[{"type":3,"data":{}}]', 30))
            vault.flush()
        now = datetime.now(UTC)
        catalogs[1].blobs.record_intent(
            "r30d/theirs-crashed.vsb",
            retention_days=30,
            created_at=now,
            expires_at=now + timedelta(days=30),
        )
        store.put("r30d/theirs-crashed.vsb", b"their crashed flush")
        mine.shred(Scope.REPLAY, 1, replay_id="a" * 32, requested_by="t", reason="t")
        before = {info.path for info in store.list()}
        later = lambda: datetime.now(UTC) + timedelta(days=2)  # noqa: E731
        planned = collect(catalogs[0], store, dry_run=True, clock=later)
        done = collect(catalogs[0], store, clock=later)
        assert (done.orphans, done.dead) == (planned.orphans, planned.dead)
        assert (done.orphans, len(done.dead)) == ([], 1)
        after = {info.path for info in store.list()}
        assert before - after == set(done.dead)
        assert {"foreign/readme.txt", "r30d/theirs-crashed.vsb"} <= after
        assert b"".join(theirs.read_recording(1, "b" * 32)).startswith(b"[")
    finally:
        for vault in vaults:
            vault._reader.close()
        for catalog in catalogs:
            catalog.dispose()
