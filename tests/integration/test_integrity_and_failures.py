"""Tampering is caught, nothing leaks, and every failure leaves data stored once or still queued."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import VaultFactory
from tests.integration.helpers import read_events
from vault_store import (
    BackendUnavailable,
    CorruptData,
    DataKey,
    FlushPolicy,
    InvalidInput,
    KeyContext,
    ReadPolicy,
    Vault,
    WrappedKey,
)
from vault_store.blobstore import Buffers, LocalBlobStore
from vault_store.catalog import BlobRecord, Catalog, InsertOutcome, RangeRecord
from vault_store.core import codec
from vault_store.core.message import Segment, build_message
from vault_store.services.samples import Recording, as_messages, as_replays

A, B = "a" * 32, "b" * 32


def _two_replays_in_one_blob(vault: Vault) -> None:
    for segment_id in range(5):
        for replay in (A, B):
            body = b'[{"type":3,"data":{"replay":"%s","segment":%d}}]' % (
                replay[:4].encode(),
                segment_id,
            )
            vault.ingest_segment(
                Segment(
                    project_id=1,
                    replay_id=replay,
                    segment_id=segment_id,
                    body=body,
                    retention_days=30,
                )
            )
    (result,) = vault.flush()
    assert result.frames == 10


def _range(catalog: Catalog, replay: str, segment: int) -> tuple[str, int, int]:
    with catalog.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT blob_path, start, stop FROM recording_byte_range WHERE replay_id = :r AND segment_id = :s"
            ),
            {"r": replay, "s": segment},
        ).one()
    return row[0], row[1], row[2]


def _assert_replay_b_still_reads(vault: Vault) -> None:
    assert [s[0]["data"]["segment"] for s in read_events(vault, 1, B)] == [0, 1, 2, 3, 4]


def test_flipped_byte_in_a_blob(make_vault: VaultFactory, tmp_path: Path) -> None:
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    path, start, _ = _range(vault._catalog, A, 3)
    blob = tmp_path / "blobs" / path
    data = bytearray(blob.read_bytes())
    data[start + 20] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptData, match="segment 3"):
        read_events(make_vault(), 1, A)
    _assert_replay_b_still_reads(make_vault())


def test_truncated_blob(make_vault: VaultFactory, tmp_path: Path) -> None:
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    path, _, stop = _range(vault._catalog, B, 4)  # B sorts last: cut into its final frame
    blob = tmp_path / "blobs" / path
    blob.write_bytes(blob.read_bytes()[: stop - 5])
    assert len(read_events(make_vault(), 1, A)) == 5
    with pytest.raises(CorruptData):
        read_events(make_vault(), 1, B)


def test_swapped_ranges_fail_authentication(make_vault: VaultFactory) -> None:
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    _, start1, stop1 = _range(vault._catalog, A, 1)
    _, start2, stop2 = _range(vault._catalog, A, 2)
    with vault._catalog.engine.begin() as conn:
        for segment, (start, stop) in ((1, (start2, stop2)), (2, (start1, stop1))):
            conn.execute(
                text(
                    "UPDATE recording_byte_range SET start = :a, stop = :b WHERE replay_id = :r AND segment_id = :s"
                ),
                {"a": start, "b": stop, "r": A, "s": segment},
            )
    with pytest.raises(CorruptData, match="segment 1 failed authentication"):
        read_events(make_vault(), 1, A)
    _assert_replay_b_still_reads(make_vault())


def test_wrapped_key_moved_to_another_replays_row(make_vault: VaultFactory) -> None:
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    with vault._catalog.engine.begin() as conn:
        wrapped, check = conn.execute(
            text(
                "SELECT wrapped_dek, key_check FROM recording_byte_range WHERE replay_id = :r LIMIT 1"
            ),
            {"r": B},
        ).one()
        conn.execute(
            text(
                "UPDATE recording_byte_range SET wrapped_dek = :w, key_check = :c WHERE replay_id = :r"
            ),
            {"w": wrapped, "c": check, "r": A},
        )
    with pytest.raises(CorruptData, match="does not belong"):
        read_events(make_vault(), 1, A)
    _assert_replay_b_still_reads(make_vault())


def test_key_check_mismatch_is_reported_before_decryption(make_vault: VaultFactory) -> None:
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    with vault._catalog.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE recording_byte_range SET key_check = :c WHERE replay_id = :r AND segment_id = 2"
            ),
            {"c": bytes(32), "r": A},
        )
    with pytest.raises(CorruptData, match="segment 2 failed its key check"):
        read_events(make_vault(), 1, A)


def _distinctive_strings(recordings: list[Recording]) -> list[bytes]:
    found: list[bytes] = []
    for recording in recordings:
        text_nodes = [
            e["data"]["node"]
            for e in recording.events
            if e.get("type") == 2 and "node" in e.get("data", {})
        ]
        for node in text_nodes:
            stack = [node]
            while stack and len(found) < 3 * len(recordings):
                current = stack.pop()
                content = current.get("textContent") or ""
                if len(content.strip()) >= 24:
                    found.append(content.strip()[:40].encode())
                    break
                stack.extend(current.get("childNodes", []))
    return found


def test_no_plaintext_or_key_material_in_blobs_catalog_or_logs(
    make_vault: VaultFactory,
    recordings: list[Recording],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    generated: list[bytes] = []
    original = DataKey.generate

    def recording_generate() -> DataKey:
        key = original()
        generated.append(key.reveal())
        return key

    monkeypatch.setattr(DataKey, "generate", staticmethod(recording_generate))
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # logs every statement
    vault = make_vault()
    replays = as_replays(recordings)
    for raw in as_messages(replays):
        vault.ingest_message(raw)
    vault.flush()
    assert read_events(vault, replays[0].project_id, replays[0].replay_id)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

    secrets = _distinctive_strings(recordings)
    assert len(secrets) >= 5 and len(generated) == len(replays)
    blob_bytes = b"".join(p.read_bytes() for p in (tmp_path / "blobs").rglob("*.vsb"))
    with vault._catalog.engine.connect() as conn:
        wrapped = [
            bytes(w)
            for (w,) in conn.execute(text("SELECT DISTINCT wrapped_dek FROM recording_byte_range"))
        ]
        catalog_dump = "\n".join(
            repr(row)
            for table in ("recording_byte_range", "blob")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ).encode()
    sqlite_file = tmp_path / "catalog.sqlite3"
    catalog_bytes = catalog_dump + (sqlite_file.read_bytes() if sqlite_file.exists() else b"")
    logs = caplog.text.encode()
    assert "INSERT" in caplog.text or "COPY" in caplog.text or "SELECT" in caplog.text
    for secret in secrets:
        assert secret not in blob_bytes and secret not in catalog_bytes
    for key in generated:
        for haystack in (blob_bytes, catalog_bytes, logs):
            assert key not in haystack and key.hex().encode() not in haystack
    for wrapped_key in wrapped:
        assert wrapped_key not in blob_bytes
        assert wrapped_key.hex().encode() not in logs and repr(wrapped_key).encode() not in logs


def test_malformed_messages_store_nothing(make_vault: VaultFactory, tmp_path: Path) -> None:
    vault = make_vault()
    good = build_message(project_id=1, replay_id=A, segment_id=0, body=b"[]")
    for bad in (
        good[:-4],
        build_message(project_id=1, replay_id="XYZ", segment_id=0, body=b"[]"),
        build_message(project_id=1, replay_id=A, segment_id=0, body=b"{}"),
    ):
        with pytest.raises(InvalidInput):
            vault.ingest_message(bad)
    assert vault.flush() == []
    assert vault.stats().rows == 0
    assert list((tmp_path / "blobs").rglob("*.vsb")) == []


class FlakyStore(LocalBlobStore):
    """A real local store whose next `failures` uploads fail as unavailable."""

    failures = 0

    def put(self, path: str, data: Buffers, **kwargs: object) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("injected", backend="test", op="put")
        super().put(path, data, **kwargs)  # type: ignore[arg-type]


def test_failed_upload_keeps_frames_queued_then_stores_them_once(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path / "blobs")
    vault = make_vault(blob_store=store)
    vault.ingest_segment(
        Segment(project_id=1, replay_id=A, segment_id=0, body=b"[1]", retention_days=30)
    )
    store.failures = 1
    with pytest.raises(BackendUnavailable):
        vault.flush()
    assert vault.stats().rows == 0
    vault.ingest_segment(
        Segment(project_id=1, replay_id=A, segment_id=1, body=b"[2]", retention_days=30)
    )
    (result,) = vault.flush()
    assert (result.frames, result.inserted) == (2, 2)
    assert read_events(vault, 1, A) == [[1], [2]]


def test_failed_catalog_insert_leaves_an_orphan_blob_and_no_row(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()
    vault.ingest_segment(
        Segment(project_id=1, replay_id=A, segment_id=0, body=b"[1]", retention_days=30)
    )
    real_insert = vault._catalog.insert_blob

    def refuse(blob: BlobRecord, ranges: Sequence[RangeRecord], **kwargs: object) -> InsertOutcome:
        raise BackendUnavailable("injected", backend="catalog", op="insert")

    vault._catalog.insert_blob = refuse  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailable):
        vault.flush()
    vault._catalog.insert_blob = real_insert  # type: ignore[method-assign]
    assert len(list((tmp_path / "blobs").rglob("*.vsb"))) == 1  # the orphan, for GC
    (result,) = vault.flush()
    assert result.inserted == 1
    assert read_events(vault, 1, A) == [[1]]
    assert vault.stats().blobs == 1


def test_kms_failure_stores_nothing_never_plaintext(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    vault = make_vault()

    def refuse(key: DataKey, context: KeyContext) -> WrappedKey:
        raise BackendUnavailable("injected", backend="kms", op="wrap")

    vault._kms.wrap = refuse  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailable):
        vault.ingest_segment(
            Segment(project_id=1, replay_id=A, segment_id=0, body=b'["secret"]', retention_days=30)
        )
    assert vault.flush() == []
    assert list((tmp_path / "blobs").rglob("*.vsb")) == []


def test_failed_background_flush_requeues_and_surfaces_at_the_next_call(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    store = FlakyStore(tmp_path / "blobs")
    vault = make_vault(flush=FlushPolicy(max_segments=2), blob_store=store)
    store.failures = 1

    def segment(n: int) -> Segment:
        return Segment(project_id=1, replay_id=A, segment_id=n, body=b"[%d]" % n, retention_days=30)

    vault.ingest_segment(segment(0))
    raised = 0
    for n in (1, 2, 2, 2):  # 1 makes the buffer due; the failure surfaces at some later call
        try:
            vault.ingest_segment(segment(n))
        except BackendUnavailable:
            raised += 1
        time.sleep(0.05)
    try:
        vault.flush()  # waits for a flush still in the background: its failure surfaces here
    except BackendUnavailable:
        raised += 1
    assert raised == 1
    vault.ingest_segment(segment(3))
    vault.flush()
    assert read_events(vault, 1, A) == [[0], [1], [2], [3]]
    stats = vault.stats()
    assert stats.rows == 4  # segment 2 was sent three times: extra copies are dead bytes only
    assert len(list((tmp_path / "blobs").rglob("*.vsb"))) == stats.blobs  # the failed put left none


def test_a_page_decompressed_in_place_still_caps_each_segment(
    make_vault: VaultFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The declared size of every frame of a page is checked against the cap before the page's
    chunk is allocated, as open_frame checks it before decompressing."""
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    assert len(read_events(make_vault(), 1, A)) == 5
    monkeypatch.setattr(codec, "MAX_SEGMENT_BYTES", 16)
    with pytest.raises(CorruptData, match="cap"):
        read_events(make_vault(), 1, A)


def test_a_frame_that_fails_to_decompress_into_its_page_fails_the_read(
    make_vault: VaultFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decompression into the page runs on the pool after the page is handed on: its errors
    still reach the reader's caller, and no chunk of that page is produced."""
    vault = make_vault()
    _two_replays_in_one_blob(vault)
    whole = codec.decompress_into

    def failing(data: bytes, target: memoryview) -> None:
        whole(data, target)
        if bytes(target).startswith(b'[{"type":3,"data":{"replay":"aaaa","segment":3}'):
            raise CorruptData("segment does not decompress")

    monkeypatch.setattr(codec, "decompress_into", failing)
    chunks = make_vault(read=ReadPolicy(page_segments=2)).read_recording(1, A)
    assert next(chunks) == b"["
    assert next(chunks).startswith(b'[{"type":3,"data":{"replay":"aaaa","segment":0}')
    with pytest.raises(CorruptData, match="does not decompress"):
        next(chunks)
