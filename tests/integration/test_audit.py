"""The audit chain on SQLite and PostgreSQL: every kind of tampering is found and named."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import VaultFactory
from vault_store import Vault
from vault_store.catalog import audit as trail
from vault_store.catalog.records import Scope
from vault_store.core.message import Segment
from vault_store.services.gc import collect


@pytest.fixture
def history(make_vault: VaultFactory) -> Vault:
    """A vault whose trail holds deletions (one with overwrite) and a GC run: 7 events."""
    vault = make_vault()
    for replay in ("a" * 32, "b" * 32, "c" * 32):
        vault.ingest_segment(
            Segment(project_id=1, replay_id=replay, segment_id=0, body=b"[1]", retention_days=30)
        )
    vault.flush()
    vault.shred(Scope.REPLAY, 1, replay_id="a" * 32, requested_by="dpo", reason="GDPR")
    vault.shred(
        Scope.REPLAY, 1, replay_id="b" * 32, requested_by="dpo", reason="GDPR", overwrite=True
    )
    collect(vault._catalog, vault._blob_store)
    return vault


def _verify(vault: Vault) -> trail.ChainReport:
    return vault.verify_audit()


def _kinds(vault: Vault) -> list[str]:
    return [event.kind for event in vault.audit_events()]


def test_an_untouched_trail_verifies(history: Vault) -> None:
    report = _verify(history)
    assert report.ok, report.problem
    assert _kinds(history) == [
        "deletion.requested",
        "deletion.completed",
        "deletion.requested",
        "deletion.completed",
        "overwrite.blob",
        "deletion.overwritten",
        "gc.run",
    ]
    assert report.events == 7 and len(report.head) == 32


def _tamper(vault: Vault, sql: str) -> trail.ChainReport:
    with vault._catalog.engine.begin() as conn:
        conn.execute(text(sql))
    return _verify(vault)


def test_an_edited_event_is_named(history: Vault) -> None:
    report = _tamper(
        history, "UPDATE audit_event SET details = replace(details, 'GDPR', 'other') WHERE seq = 3"
    )
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "hash" in (report.problem or "")


def test_an_edited_actor_is_named(history: Vault) -> None:
    report = _tamper(history, "UPDATE audit_event SET actor = 'someone else' WHERE seq = 1")
    assert report.first_bad_seq == 1


def test_a_removed_event_is_named(history: Vault) -> None:
    report = _tamper(history, "DELETE FROM audit_event WHERE seq = 4")
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "expected event 4" in (report.problem or "")


def test_reordered_events_are_named(history: Vault) -> None:
    with history._catalog.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET seq = 100 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_event SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_event SET seq = 3 WHERE seq = 100"))
    report = _verify(history)
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_a_cut_off_tail_is_found_through_the_deletions(history: Vault) -> None:
    report = _tamper(history, "DELETE FROM audit_event WHERE seq >= 4")
    assert not report.ok
    assert report.first_bad_seq is None
    assert "missing its audit events" in (report.problem or "")


def test_a_forged_rehashed_event_still_breaks_the_next_link(history: Vault) -> None:
    with history._catalog.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET hash = prev_hash WHERE seq = 2"))
    assert _verify(history).first_bad_seq == 2


def test_events_are_read_a_page_at_a_time_and_from_since_on(
    history: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = list(history.audit_events())
    monkeypatch.setattr(trail, "_PAGE", 2)  # 7 events: pages of 2, 2, 2 and 1
    assert list(history.audit_events()) == everything
    later = everything[3].at
    assert list(history.audit_events(since=later)) == [e for e in everything if e.at >= later]
