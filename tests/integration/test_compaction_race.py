"""Compaction in its own process: racing a forced shred, and killed with kill -9 at random.

A `vault-store compact` process runs against the same catalog and blob directory as this one.
Racing a shred with overwrite, whatever wins: no row of the deleted replay is left and not one
of its sealed frames is found anywhere in the store (compacted copy, sources, or an abandoned
new blob), while the other replay reads back byte for byte. Killed with kill -9 at a random
moment: every replay reads back byte for byte, and after GC every file in the store is a blob
the catalog holds as live or dead (at most the orphan was left, and GC removed it).

VAULT_STORE_RACE_ROUNDS sets the rounds (default 6 per database and test).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from tests.builders import replay_id, segment
from tests.conftest import VaultFactory
from vault_store import Vault
from vault_store.blobstore import LocalBlobStore
from vault_store.catalog import Catalog
from vault_store.catalog.models import Blob
from vault_store.catalog.records import BlobState, Scope
from vault_store.core.policies import FlushPolicy

ROUNDS = int(os.environ.get("VAULT_STORE_RACE_ROUNDS", "6"))
ROOT = Path(__file__).resolve().parents[2]


def _compact(database_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VAULT_STORE_HOME": str(tmp_path / "home"),
        "VAULT_STORE_DATABASE_URL": database_url,
        "VAULT_STORE_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "VAULT_STORE_KMS_URL": f"local-kms://{tmp_path / 'kek.json'}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vault_store", "compact", "--idle-seconds", "0", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_intent(catalog: Catalog, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with catalog.engine.connect() as conn:
            if conn.execute(select(Blob.path).where(Blob.state == BlobState.PENDING.value)).first():
                return
        time.sleep(0.001)


def _spread(vault: Vault, replays: list[str], segments: int) -> None:
    for n in range(segments):
        for replay in replays:
            vault.ingest_segment(segment(replay, n, padded=True))
        vault.flush()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.vsb")}


@pytest.fixture
def spread_vault(make_vault: VaultFactory) -> Vault:
    return make_vault(flush=FlushPolicy(max_bytes=1 << 30, max_segments=None, max_age_seconds=None))


def test_a_shred_racing_a_compaction_process_leaves_no_row_and_no_copy(
    spread_vault: Vault, catalog: Catalog, database_url: str, tmp_path: Path
) -> None:
    vault = spread_vault
    store = LocalBlobStore(tmp_path / "blobs")
    rng = random.Random(19)
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        victim, survivor = replay_id(2 * round_), replay_id(2 * round_ + 1)
        _spread(vault, [victim, survivor], 12)
        frames = [
            store.get_range(r.blob_path, r.start, r.stop)
            for r in catalog.replay_ranges(1, victim, limit=1000)
        ]
        expected = b"".join(vault.read_recording(1, survivor))
        process = _compact(database_url, tmp_path)
        if round_ % 2:
            time.sleep(rng.uniform(0.0, 4.0))
        else:
            # As soon as the compaction has announced its blob (its copy is under way).
            _wait_for_intent(catalog, process)
        vault.shred(
            Scope.REPLAY, 1, replay_id=victim, requested_by="race", reason="race", overwrite=True
        )
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
        summary = orjson.loads(out)
        # Raced: deleted during the copy; 2: compacted first; 1: only the survivor (shred first).
        outcomes.append("raced" if summary["replays_raced"] else str(summary["replays_compacted"]))
        vault.run_overwrites()
        assert catalog.replay_ranges(1, victim, limit=1000) == []
        everything = b"".join(_files(tmp_path / "blobs").values())
        assert frames and not any(frame in everything for frame in frames)
        assert b"".join(vault.read_recording(1, survivor)) == expected
    print("outcomes:", outcomes)


def test_a_compaction_killed_at_random_leaves_every_replay_readable_and_at_most_an_orphan(
    spread_vault: Vault, catalog: Catalog, database_url: str, tmp_path: Path
) -> None:
    vault = spread_vault
    rng = random.Random(9)
    replays = [replay_id(100 + n) for n in range(4)]
    _spread(vault, replays, 40)
    expected = {r: b"".join(vault.read_recording(1, r)) for r in replays}
    killed_after = 0
    for _round in range(ROUNDS):
        process = _compact(database_url, tmp_path)
        time.sleep(rng.uniform(0.3, 2.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed_after += 1
        process.wait(timeout=60)
        for replay in replays:
            assert b"".join(vault.read_recording(1, replay)) == expected[replay]
        with catalog.engine.connect() as conn:
            pending = conn.execute(
                select(Blob.path).where(Blob.state == BlobState.PENDING.value)
            ).all()
        assert len(pending) <= 1
        vault.collect_garbage(grace=timedelta(0))
        with catalog.engine.connect() as conn:
            kept = {
                path
                for path, state in conn.execute(select(Blob.path, Blob.state))
                if state in (BlobState.LIVE.value, BlobState.DEAD.value)
            }
        assert set(_files(tmp_path / "blobs")) <= kept
        for replay in replays:
            assert b"".join(vault.read_recording(1, replay)) == expected[replay]
        # Make the replays loose again for the next round: a late segment each.
        for replay in replays:
            vault.ingest_segment(segment(replay, 1000 + _round, padded=True))
        vault.flush()
        expected = {r: b"".join(vault.read_recording(1, r)) for r in replays}
    print("killed while running:", killed_after, "of", ROUNDS)
