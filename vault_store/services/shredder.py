"""Crypto-shredding: delete a replay's, a user's or a project's range rows (and so their keys).

A deletion is first recorded (deletion row, tombstones, audit event) in one transaction, so it
is durable and late segments are dropped from then on; then it runs in chunks, each one
transaction: record the ranges for a forced overwrite if asked, delete the rows (the wrapped
keys go with them), lower the blobs' live bytes, count. Running a deletion again continues where
it stopped. Blobs are never touched here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from vault_store.catalog import Catalog
from vault_store.catalog.records import DeletionStatus, Scope
from vault_store.errors import InvalidInput

# Where these names were first defined; callers still import them from here.
__all__ = ["DEFAULT_CHUNK_ROWS", "Shredder"]

DEFAULT_CHUNK_ROWS = 5000


class Shredder:
    """Records and runs deletions on a catalog."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        self._deletions = catalog.deletions
        self._chunk_rows = chunk_rows
        self._clock = clock

    def request(
        self,
        scope: Scope,
        project_id: int,
        *,
        requested_by: str,
        reason: str,
        replay_id: str | None = None,
        subject_hash: bytes | None = None,
        overwrite: bool = False,
        deletion_id: str | None = None,
    ) -> str:
        """Record a deletion and its tombstones; reads and late segments stop at once.

        With `deletion_id` (a retried task's idempotency key) a deletion already recorded under
        that id is not recorded again.
        """
        for name, value in (("requested_by", requested_by), ("reason", reason)):
            if not value.strip():
                raise InvalidInput(name, "a deletion needs who asked and why")
        if scope is Scope.REPLAY and replay_id is None:
            raise InvalidInput("replay_id", "a replay deletion needs a replay id")
        if scope is Scope.USER and subject_hash is None:
            raise InvalidInput("subject_hash", "a user deletion needs a user identifier")
        return self._deletions.record(
            deletion_id or uuid.uuid4().hex,
            scope,
            project_id,
            requested_by=requested_by,
            reason=reason,
            replay_id=replay_id,
            subject_hash=subject_hash,
            overwrite=overwrite,
            now=self._clock(),
        )

    def run(
        self,
        deletion_id: str,
        *,
        max_chunks: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> DeletionStatus:
        """Delete the target's rows chunk by chunk; idempotent, and resumable after any stop.

        `progress(rows_deleted_so_far, bytes_so_far)` is called after each chunk. With
        `max_chunks`, stops early (still RUNNING), as an interrupted run would.
        """
        status = self.status(deletion_id)
        if status.status.final:
            return status
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            deleted = self._deletions.delete_chunk(status, self._chunk_rows, now=self._clock())
            chunks += 1
            if not deleted:
                # Done only if the finishing transaction finds no row left; else delete again.
                finished = self._deletions.finish(status, now=self._clock())
                if finished.status.final:
                    return finished
                continue
            if progress is not None:
                current = self.status(deletion_id)
                progress(current.rows_deleted, current.bytes_shredded)
        return self.status(deletion_id)

    def status(self, deletion_id: str) -> DeletionStatus:
        """The deletion's current state; InvalidInput if there is none."""
        return self._deletions.status(deletion_id)
