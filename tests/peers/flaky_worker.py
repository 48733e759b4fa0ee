"""A real `vault-store worker` whose blob store loses every Nth upload's answer.

Run as ``python -m tests.peers.flaky_worker worker ...``. The upload lands and then the store
raises BackendUnavailable, as when a response is lost: the flush fails after the blob exists, so
the worker must not lose or duplicate a segment, and the blob is left for GC as an orphan.
FLAKY_PUT_EVERY sets N.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from pathlib import Path

from vault_store.blobstore import Buffers, LocalBlobStore
from vault_store.errors import BackendUnavailable
from vault_store.settings import Settings
from vault_store.vault import Vault
from workers.app import create_app, worker_vault
from workers.options import run_worker


class LosesAnswers(LocalBlobStore):
    """Every `every`-th put is stored, then reported as failed."""

    _count = 0
    _lock = threading.Lock()

    def __init__(self, root: Path, every: int) -> None:
        super().__init__(root)
        self._every = every

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        super().put(path, data, expires_at=expires_at, custom_time=custom_time)
        with LosesAnswers._lock:
            LosesAnswers._count += 1
            lose = LosesAnswers._count % self._every == 0
        if lose:
            raise BackendUnavailable("injected: answer lost", backend="flaky", op="put")


def flaky_vault(settings: Settings) -> Vault:
    root = Path(settings.blob_url.removeprefix("file://"))
    every = int(os.environ.get("FLAKY_PUT_EVERY", "3"))
    return worker_vault(settings, blob_store=LosesAnswers(root, every))


if __name__ == "__main__":  # argv: worker [celery worker options]
    run_worker(create_app(Settings.from_env(), vault_factory=flaky_vault), sys.argv[2:])
