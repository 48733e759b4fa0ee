"""The compliance report, on SQLite and PostgreSQL, for pending, completed and overdue requests."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import storage  # type: ignore[attr-defined]

from tests.conftest import VaultFactory
from tests.peers.gcs import FaultProxy
from vault_store import Scope, Vault
from vault_store.blobstore.gcs import GcsBlobStore
from vault_store.core.message import Segment
from vault_store.services import report as compliance
from vault_store.services.shredder import Shredder
from vault_store.settings import CopyPolicy

NOW = datetime.now(UTC)
A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32


@pytest.fixture
def scenario(make_vault: VaultFactory) -> tuple[Vault, dict[str, str]]:
    """Four requests: two completed (one with overwrite), one pending, one overdue."""
    vault = make_vault()
    for replay in (A, B, C, D):
        for n in range(3):
            vault.ingest_segment(
                Segment(
                    project_id=5,
                    replay_id=replay,
                    segment_id=n,
                    body=b"[%d]" % n,
                    retention_days=30,
                )
            )
    vault.flush()
    ids = {
        "done": vault.shred(
            Scope.REPLAY, 5, replay_id=A, requested_by="dpo", reason="GDPR art. 17"
        ).id,
        "overwritten": vault.shred(
            Scope.REPLAY, 5, replay_id=B, requested_by="legal", reason="court", overwrite=True
        ).id,
        "pending": vault.shred(
            Scope.REPLAY, 5, replay_id=C, requested_by="dpo", reason="user asked", run=False
        ).id,
    }
    forty_days_ago = Shredder(vault._catalog, clock=lambda: NOW - timedelta(days=40))
    ids["overdue"] = forty_days_ago.request(
        Scope.REPLAY, 5, replay_id=D, requested_by="dpo", reason="forgotten"
    )
    return vault, ids


def _build(vault: Vault, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("copies", CopyPolicy(backup_retention_days=35, soft_delete_days=7))
    return vault.deletion_report(
        NOW - timedelta(days=60), NOW + timedelta(days=1), now=NOW, **kwargs
    )


def test_report_counts_and_proofs(scenario: tuple[Vault, dict[str, str]]) -> None:
    vault, ids = scenario
    report = _build(vault)
    summary = report["summary"]
    assert summary == {
        **summary,
        "requests": 4,
        "completed": 2,
        "pending": 2,
        "overdue": 1,
        "completed_late": 0,
        "proof_failures": 0,
        "rows_deleted": 6,
    }
    entries = {entry["id"]: entry for entry in report["deletions"]}
    done = entries[ids["done"]]
    assert (
        done["method"] == "shred" and done["within_deadline"] is True and done["overdue"] is False
    )
    assert done["proof"] == {
        "checked": True,
        "range_rows_remaining": 0,
        "wrapped_keys_remaining": 0,
        "read_attempt": ["shredded"],
        "overwrite_ranges_pending": 0,
        "holds": True,
    }
    assert 0 <= done["hours_to_complete"] < 1
    completed = datetime.fromisoformat(done["completed_at"])
    # Only the declared backups: no KMS destruction is scheduled, and no GCS soft delete on a
    # local-directory store (even with a window declared).
    assert done["copies_may_remain"] == [
        {"holder": "catalog backups", "until": (completed + timedelta(days=35)).isoformat()}
    ]
    assert (done["verified_rows_left"], done["audit_mismatches"]) == (0, [])
    assert done["target_label"] == f"replay {done['target']}"
    overwritten = entries[ids["overwritten"]]
    assert overwritten["method"] == "shred + null-overwrite" and overwritten["proof"]["holds"]
    assert [c["holder"] for c in overwritten["copies_may_remain"]] == ["catalog backups"]
    assert report["copy_policy"]["gcs_soft_delete_days"] is None
    declared = _build(vault, copies=CopyPolicy(kms_destroy_days=30))
    kms_only = next(e for e in declared["deletions"] if e["id"] == ids["done"])
    assert kms_only["copies_may_remain"] == [
        {"holder": "KMS key version", "until": (completed + timedelta(days=30)).isoformat()}
    ]
    assert entries[ids["pending"]]["rows_deleted"] is None  # progress is not in the chain
    assert entries[ids["pending"]]["status"] == "pending" and not entries[ids["pending"]]["overdue"]
    overdue = entries[ids["overdue"]]
    assert overdue["overdue"] is True and overdue["hours_to_complete"] is None
    assert (
        overdue["deadline"]
        == (datetime.fromisoformat(overdue["requested_at"]) + timedelta(days=30)).isoformat()
    )
    (storage,) = report["storage_by_retention"]
    assert storage["retention_days"] == 30 and storage["blobs"] == 1
    assert storage["live_bytes"] + storage["dead_bytes"] == storage["bytes_stored"]
    assert storage["live_bytes"] == vault.stats().live_bytes


def test_a_false_proof_is_reported(scenario: tuple[Vault, dict[str, str]]) -> None:
    vault, ids = scenario
    from sqlalchemy import delete

    from vault_store.catalog.models import Tombstone

    with vault._catalog.engine.begin() as conn:  # someone removed the tombstone: A reads again?
        conn.execute(delete(Tombstone).where(Tombstone.deletion_id == ids["done"]))
    entry = next(e for e in _build(vault)["deletions"] if e["id"] == ids["done"])
    assert entry["proof"]["holds"] is False
    assert entry["proof"]["read_attempt"] == ["not found"]


def test_project_filter_and_formats(scenario: tuple[Vault, dict[str, str]]) -> None:
    vault, _ids = scenario
    assert _build(vault, project_id=6)["summary"]["requests"] == 0
    report = _build(vault)
    assert json.loads(compliance.render(report, "json")) == report
    rows = list(csv.DictReader(io.StringIO(compliance.render(report, "csv"))))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done", "pending"}
    assert sum(r["overdue"] == "True" for r in rows) == 1
    page = compliance.render(report, "html")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 2
    assert "OVERDUE" in page and "@media print" in page and "GDPR art. 17" in page
    assert "<script" not in page
    with pytest.raises(ValueError, match="unknown format"):
        compliance.render(report, "pdf")


def test_html_escapes_what_requesters_typed(make_vault: VaultFactory) -> None:
    vault = make_vault()
    vault.shred(Scope.REPLAY, 1, replay_id=A, requested_by="<script>x</script>", reason="a & b")
    page = compliance.render(_build(vault), "html")
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page and "a &amp; b" in page


def test_html_shows_a_zero_median_as_a_number(scenario: tuple[Vault, dict[str, str]]) -> None:
    vault, _ids = scenario
    report = _build(vault)
    report["summary"]["median_hours_to_complete"] = 0.0
    page = compliance.render(report, "html")
    assert "<b>0.00</b><span>median hours to complete" in page


def test_html_names_each_target_and_lists_only_copies_that_exist(
    scenario: tuple[Vault, dict[str, str]],
) -> None:
    vault, ids = scenario
    vault.shred(Scope.USER, 5, user="Carol@Example.com", requested_by="dpo", reason="erase")
    report = _build(vault, copies=CopyPolicy())
    page = compliance.render(report, "html")
    entries = {entry["id"]: entry for entry in report["deletions"]}
    assert f"replay {entries[ids['done']]['target']}" in page
    user = next(e for e in report["deletions"] if e["scope"] == "user")
    assert user["status"] == "nothing_held" and user["target"] in page and "keyed hash" in page
    assert "carol" not in page.lower()  # the identifier as requested is not kept
    assert "GCS soft delete" not in page and "KMS key version" not in page
    assert "catalog backups" not in page and "None: no backup" in page


def test_the_report_prints_the_chain_s_values_and_flags_an_edited_row(
    scenario: tuple[Vault, dict[str, str]],
) -> None:
    from sqlalchemy import update

    from vault_store.catalog.models import Deletion

    vault, ids = scenario
    honest = next(e for e in _build(vault)["deletions"] if e["id"] == ids["done"])
    with vault._catalog.engine.begin() as conn:
        conn.execute(
            update(Deletion)
            .where(Deletion.id == ids["done"])
            .values(requested_by="someone else", reason="edited", requested_at=NOW)
        )
    entry = next(e for e in _build(vault)["deletions"] if e["id"] == ids["done"])
    assert entry["audit_mismatches"] == ["requested_by", "reason", "requested_at"]
    assert (entry["requested_by"], entry["reason"], entry["requested_at"]) == (
        honest["requested_by"],
        honest["reason"],
        honest["requested_at"],
    )
    assert "row edited" in compliance.render(_build(vault), "html")
    assert not vault.verify_audit().ok


@pytest.mark.parametrize("window_days", [3, 0])
def test_a_gcs_store_reports_the_soft_delete_window_its_bucket_holds(
    make_vault: VaultFactory, gcs_proxy: FaultProxy, window_days: int
) -> None:
    """The window comes from the bucket's softDeletePolicy, read through the real
    google-cloud-storage client from the emulator (which keeps the policy a PATCH sets): 3 days
    (not GCS's 7-day default, so a hard-coded week would fail), or 0 (soft delete off: no
    residual copy). A local-directory store states none (test_report_counts_and_proofs)."""
    bucket_name = f"soft-{uuid.uuid4().hex[:12]}"
    client = storage.Client()  # STORAGE_EMULATOR_HOST: the proxy to the emulator
    bucket = client.create_bucket(bucket_name)
    bucket.soft_delete_policy.retention_duration_seconds = window_days * 86400
    bucket.patch()
    vault = make_vault(blob_store=GcsBlobStore(bucket_name, "replays", retry_deadline=3.0))
    for n in range(2):
        vault.ingest_segment(
            Segment(project_id=5, replay_id=A, segment_id=n, body=b"[%d]" % n, retention_days=30)
        )
    vault.flush()
    shredded = vault.shred(
        Scope.REPLAY, 5, replay_id=A, requested_by="legal", reason="court", overwrite=True
    )
    gcs_proxy.seen.clear()
    report = _build(vault, copies=None)
    # The policy was read from the bucket's own metadata, not assumed.
    assert ("GET", f"/storage/v1/b/{bucket_name}") in {
        (method, path.split("?")[0]) for method, path in gcs_proxy.seen
    }
    assert report["copy_policy"]["gcs_soft_delete_days"] == window_days
    entry = next(e for e in report["deletions"] if e["id"] == shredded.id)
    overwritten = datetime.fromisoformat(entry["overwrite_done_at"])
    expected = (
        [{"holder": "GCS soft delete", "until": (overwritten + timedelta(days=3)).isoformat()}]
        if window_days
        else []
    )
    assert entry["copies_may_remain"] == expected
