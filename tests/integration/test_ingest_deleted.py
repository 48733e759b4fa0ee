"""Every ingest path drops a deleted replay's or project's segments before a key is made."""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import message, segment
from tests.integration.helpers import run, tombstone
from vault_store import Catalog, LocalBlobStore, LocalKms, Vault
from vault_store.catalog.records import Scope
from vault_store.core.crypto import DataKey
from vault_store.core.keys import KeyContext, WrappedKey

LIVE, GONE = "a" * 32, "b" * 32


class CountingKms(LocalKms):
    """A local key file that counts whose keys it wrapped."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.wrapped_for: list[tuple[int, str]] = []

    def wrap(self, key: DataKey, context: KeyContext) -> WrappedKey:
        self.wrapped_for.append((context.project_id, context.replay_id))
        return super().wrap(key, context)


def _vault(catalog: Catalog, tmp_path: Path) -> tuple[Vault, CountingKms]:
    kms = CountingKms(tmp_path / "kek.json")
    vault = Vault(catalog=catalog, blob_store=LocalBlobStore(tmp_path / "blobs"), kms=kms)
    return vault, kms


def test_the_library_makes_no_key_for_a_deleted_replay_or_project(
    catalog: Catalog, tmp_path: Path
) -> None:
    tombstone(catalog, 1, GONE)
    tombstone(catalog, 2, None)
    vault, kms = _vault(catalog, tmp_path)
    try:
        gone = vault.ingest_segment(segment(GONE, 0))
        project_gone = vault.ingest_segment(segment(LIVE, 0, project=2))
        live = vault.ingest_segment(segment(LIVE, 0))
        assert vault.buffer(segment(GONE, 1)) is False
        vault.flush()
    finally:
        vault.close()
    assert (gone.buffered, gone.dropped_deleted) == (False, True)
    assert (project_gone.buffered, project_gone.dropped_deleted) == (False, True)
    assert (live.buffered, live.dropped_deleted) == (True, False)
    assert kms.wrapped_for == [(1, LIVE)]


def test_a_batch_is_checked_in_one_go_and_the_drop_is_audited(
    catalog: Catalog, tmp_path: Path
) -> None:
    tombstone(catalog, 1, GONE)
    vault, kms = _vault(catalog, tmp_path)
    try:
        admission = vault.admit(
            [segment(GONE, 0), segment(LIVE, 0), segment(GONE, 1)], actor="test"
        )
        for kept in admission.kept:
            vault.buffer(kept)
        vault.flush()
        events = [event.kind for event in vault.audit_events()]
    finally:
        vault.close()
    assert admission.dropped == 2
    assert [(s.replay_id, s.segment_id) for s in admission.kept] == [(LIVE, 0)]
    assert kms.wrapped_for == [(1, LIVE)]
    assert "ingest.dropped_deleted" in events


def test_the_cli_reports_a_deleted_replays_segment_as_dropped(tmp_path: Path) -> None:
    env = {"VAULT_STORE_HOME": str(tmp_path / "home")}
    first = tmp_path / "first.msgpack"
    first.write_bytes(message(GONE, 0) + message(LIVE, 0))
    assert run(env, "ingest", str(first)).returncode == 0
    deleted = run(
        env, "delete", "replay", "--project", "1", "--replay", GONE, "--by", "t", "--reason", "t"
    )
    assert deleted.returncode == 0, deleted.stderr
    late = tmp_path / "late.msgpack"
    late.write_bytes(message(GONE, 1))
    result = run(env, "ingest", "--json", str(late))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dropped_deleted"] == 1
    assert summary["segments"] == 0


def test_a_replay_deleted_after_its_key_was_made_is_dropped_at_insert(
    catalog: Catalog, tmp_path: Path
) -> None:
    """The other half of the rule: a process that already holds a sealing key when another
    process shreds the replay keeps sealing with it, and the flush drops the rows."""
    other, _ = _vault(catalog, tmp_path)
    late, kms = _vault(catalog, tmp_path)
    try:
        late.buffer(segment(GONE, 0))  # the key is made now, before the deletion
        other.shred(Scope.REPLAY, 1, replay_id=GONE, requested_by="t", reason="t")
        late.buffer(segment(GONE, 1))
        (result,) = late.flush()
    finally:
        late.close()
        other.close()
    assert (result.inserted, result.dropped_deleted) == (0, 2)
    assert kms.wrapped_for == [(1, GONE)]
    assert other.stats().rows == 0
