"""The batch function on a real vault, without a broker: what it reports for a redelivery."""

from __future__ import annotations

from pathlib import Path

from tests.builders import message
from vault_store import LocalBlobStore, LocalKms, Vault
from vault_store.catalog import Catalog
from vault_store.settings import WorkerPolicy
from workers.ingest import Delivery, ingest_batch

REPLAY = "c" * 32


class Outbox:
    """Records where messages that are not durable would go."""

    def __init__(self) -> None:
        self.requeued: list[Delivery] = []
        self.dead: list[tuple[Delivery, str]] = []

    def requeue(self, delivery: Delivery) -> None:
        self.requeued.append(delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.dead.append((delivery, reason))


def test_a_redelivered_batch_writes_and_reports_no_blob(catalog: Catalog, tmp_path: Path) -> None:
    vault = Vault(
        catalog=catalog,
        blob_store=LocalBlobStore(tmp_path / "blobs"),
        kms=LocalKms(tmp_path / "kek.json"),
    )
    deliveries = [Delivery(message(REPLAY, n)) for n in range(3)]
    try:
        first = ingest_batch(vault, deliveries, Outbox(), policy=WorkerPolicy())
        outbox = Outbox()
        again = ingest_batch(vault, deliveries, outbox, policy=WorkerPolicy())
    finally:
        vault.close()
    assert (first.stored, len(first.blobs)) == (3, 1)
    # Every segment was already stored: all acknowledged as duplicates, and no blob listed.
    assert (again.stored, again.duplicates, again.blobs) == (0, 3, [])
    assert (outbox.requeued, outbox.dead) == ([], [])
    assert len(list((tmp_path / "blobs").rglob("*.vsb"))) == 1
