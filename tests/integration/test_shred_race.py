"""Ingest racing a shred in separate processes, for each scope, on SQLite and PostgreSQL.

The ingest process flushes one segment per transaction while this process records and runs a
deletion of the same target. Once the deletion says done and ingest has finished, not one row
of the target may be left: a row left would keep a working key for deleted data.

50 rounds per scope and database by default (VAULT_STORE_RACE_ROUNDS for longer runs); each
round is bounded by a timeout on the ingest process's answers.
"""

from __future__ import annotations

import os
import queue
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import VaultFactory
from vault_store.catalog.models import RecordingByteRange
from vault_store.catalog.records import Scope, Status

ROUNDS = int(os.environ.get("VAULT_STORE_RACE_ROUNDS", "50"))
SEGMENTS = 8
ROUND_TIMEOUT = 30.0


class _Ingest:
    """The ingest process and a reader of its answers (so each wait is bounded)."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.race_ingest",
                url,
                str(tmp_path / "blobs"),
                str(tmp_path / "kek.json"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
            text=True,
        )
        self.answers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(line.strip())
        self.answers.put("exited")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, answer: str) -> None:
        got = self.answers.get(timeout=ROUND_TIMEOUT)
        assert got == answer, f"ingest process answered {got!r}, expected {answer!r}"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=ROUND_TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.mark.parametrize("scope", [Scope.REPLAY, Scope.USER, Scope.PROJECT])
def test_a_done_shred_leaves_no_row_of_its_target_under_a_racing_ingest(
    scope: Scope, make_vault: VaultFactory, database_url: str, tmp_path: Path
) -> None:
    vault = make_vault()
    vault.subjects()  # the subject key exists before two processes could both create it
    ingest = _Ingest(database_url, tmp_path)
    chance = random.Random(15)
    left: dict[int, int] = {}
    try:
        for round_ in range(ROUNDS):
            project = 1000 + round_ if scope is Scope.PROJECT else 1
            replay = f"{round_:032x}"
            user = f"user-{round_}"
            ingest.send(f"{scope.value} {project} {replay} {user} {SEGMENTS}")
            ingest.expect("started")
            # Land the deletion somewhere among the remaining flushes.
            threading.Event().wait(chance.uniform(0, 0.03))
            status = vault.shred(
                scope,
                project,
                replay_id=replay if scope is Scope.REPLAY else None,
                user=user if scope is Scope.USER else None,
                requested_by="race",
                reason="race test",
            )
            assert status.status is Status.DONE
            ingest.expect("done")
            target = RecordingByteRange.project_id == project
            if scope is not Scope.PROJECT:
                target = target & (RecordingByteRange.replay_id == replay)
            with vault._catalog.engine.connect() as conn:
                rows = conn.execute(
                    select(func.count()).select_from(RecordingByteRange).where(target)
                ).scalar_one()
            if rows:
                left[round_] = rows
    finally:
        ingest.close()
    assert left == {}, f"{len(left)} of {ROUNDS} rounds left rows of a done deletion: {left}"
