"""Key rotation with the local key file on both catalogs: rewrap is chunked, resumable, audited,
and afterwards the old version can go while everything still reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.builders import segment
from tests.conftest import VaultFactory
from tests.integration.helpers import read_events
from vault_store import Scope
from vault_store.catalog.models import AuditEvent, CatalogSecret
from vault_store.services.rewrap import KeyStatus

REPLAYS = [f"{n:032x}" for n in range(1, 8)]


class Interrupted(Exception):
    pass


def test_rewrap_moves_every_key_then_the_old_version_can_go(
    make_vault: VaultFactory, tmp_path: Path
) -> None:
    # Two vaults (two ingest processes) seal the same replays under different data keys.
    first, second = make_vault(), make_vault()
    for n, replay in enumerate(REPLAYS):
        first.ingest_segment(segment(replay, 0, project=1 + n % 2, email="ada@example.com"))
        second.ingest_segment(segment(replay, 1, project=1 + n % 2))
    first.flush()
    second.flush()
    catalog = first._catalog
    old = first.primary_kek()
    new = first.rotate_local_key()
    assert first.key_status().rows_by_kek == {old: 14 + 1}  # 14 rows and the subject key

    # Interrupted after its first chunk: what it did is committed, the rest is still old.
    def stop_after_first_chunk(keys: int, rows: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        first.rewrap_keys(actor="ops", chunk_keys=2, progress=stop_after_first_chunk)
    partial = first.key_status().rows_by_kek
    assert partial[new] == 1 + 4  # the subject key, then 2 replays with 2 keys each
    assert partial[old] == 10

    result = first.rewrap_keys(actor="ops", chunk_keys=2)
    assert (result.primary, result.keys_rewrapped, result.rows_updated) == (new, 10, 10)
    assert result.secrets_rewrapped == 0  # done by the first run
    assert first.key_status() == KeyStatus(new, {new: 15})
    again = first.rewrap_keys(actor="ops")
    assert (again.keys_rewrapped, again.rows_updated, again.chunks) == (0, 0, 0)

    with catalog.connection("test") as conn:
        kinds = conn.execute(select(AuditEvent.kind, AuditEvent.details)).all()
    rewraps = [details for kind, details in kinds if kind == "keys.rewrap"]
    assert len(rewraps) == 1 + 1 + 3  # secrets, the interrupted chunk, three more chunks

    # Remove the old version from the key file: a fresh process reads everything.
    path = tmp_path / "kek.json"
    document = json.loads(path.read_text())
    del document["keys"]["1"]
    path.write_text(json.dumps(document))
    reader = make_vault()  # a fresh LocalKms loads the file without version 1
    for n, replay in enumerate(REPLAYS):
        assert read_events(reader, 1 + n % 2, replay) == [[0], [1]]
    # The subject key still unwraps: deleting a user finds her replays.
    status = reader.shred(
        Scope.USER, 1, user="ada@example.com", requested_by="dpo", reason="art. 17"
    )
    assert status.replays_deleted == 4


def test_rewrap_of_one_project_leaves_the_others(make_vault: VaultFactory) -> None:
    vault = make_vault()
    for n, replay in enumerate(REPLAYS):
        vault.ingest_segment(segment(replay, 0, project=1 + n % 2))
    vault.flush()
    old, new = vault.primary_kek(), vault.rotate_local_key()
    result = vault.rewrap_keys(actor="ops", project_id=2)
    assert result.rows_updated == 3
    assert vault.key_status(project_id=2).rows_by_kek == {new: 3}
    assert vault.key_status(project_id=1).rows_by_kek == {old: 4}
    with vault._catalog.connection("test") as conn:
        assert conn.execute(select(CatalogSecret.kek)).all() == []
