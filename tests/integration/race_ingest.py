"""An ingest process for the shred race test: writes one target's segments, one flush each.

Driven over stdin/stdout by tests/integration/test_shred_race.py: for each line
`SCOPE PROJECT REPLAY USER SEGMENTS`, it flushes segment 0, prints `started`, flushes the
others (each its own transaction, racing the test's shred) and prints `done`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson

from vault_store import Catalog, FlushPolicy, LocalBlobStore, LocalKms, Vault
from vault_store.core.message import Segment


def segment(project: int, replay: str, n: int, user: str) -> Segment:
    """A small segment of `replay` that names `user` (so user deletions find it)."""
    event = orjson.dumps({"user": {"id": user}})
    body = b'[{"type":3,"data":{"n":%d,"pad":"%s"}}]' % (n, os.urandom(16).hex().encode())
    return Segment(
        project_id=project,
        replay_id=replay,
        segment_id=n,
        body=body,
        retention_days=30,
        replay_event=event,
    )


def main() -> None:
    url, blobs, kek = sys.argv[1:4]
    catalog = Catalog(url)
    vault = Vault(
        catalog=catalog,
        blob_store=LocalBlobStore(Path(blobs)),
        kms=LocalKms(Path(kek)),
        flush_policy=FlushPolicy(),
    )
    for line in sys.stdin:
        _scope, project, replay, user, count = line.split()
        for n in range(int(count)):
            vault.ingest_segment(segment(int(project), replay, n, user))
            vault.flush()
            if n == 0:
                print("started", flush=True)
        print("done", flush=True)
    vault.close()
    catalog.dispose()


if __name__ == "__main__":
    main()
