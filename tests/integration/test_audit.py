"""The audit chain on SQLite and PostgreSQL: every kind of tampering is found and named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from tests.conftest import VaultFactory
from vault_store import Vault
from vault_store.catalog import audit as trail
from vault_store.catalog.models import Deletion
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


def _other(value: object, column: str) -> object:
    """A different value of the column's type (what an edit of the row would write)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, datetime):
        return value + timedelta(seconds=1)
    if isinstance(value, str):
        return {"scope": "project", "status": "running"}.get(column, value + "x")
    python_type = Deletion.__table__.c[column].type.python_type
    return {datetime: datetime(2026, 1, 1, tzinfo=UTC), int: 0, str: "f" * 32}[python_type]


def test_an_edit_of_any_reported_field_of_a_deletion_is_detected(history: Vault) -> None:
    """Each field a report prints, on a done, an overwritten, a nothing-held and a pending
    deletion, edited in turn: verify names it, and the report shows the chain's value."""
    history.shred(Scope.REPLAY, 1, replay_id="d" * 32, requested_by="dpo", reason="typo")
    history.shred(
        Scope.REPLAY, 1, replay_id="c" * 32, requested_by="dpo", reason="later", run=False
    )
    assert _verify(history).ok
    with history._catalog.engine.connect() as conn:
        rows = conn.execute(select(Deletion)).all()
    assert sorted(row.status for row in rows) == ["done", "done", "nothing_held", "pending"]
    edits = 0
    for row in rows:
        for column in trail.COVERED_FIELDS:
            original = getattr(row, column)
            if row.status == "pending" and column in ("status", "rows_deleted", "bytes_shredded"):
                continue  # progress of an unfinished deletion: not audited, never reported
            edited = _other(original, column)
            with history._catalog.engine.begin() as conn:
                conn.execute(update(Deletion).where(Deletion.id == row.id).values({column: edited}))
            report = _verify(history)
            assert not report.ok and column in (report.problem or ""), (row.status, column)
            with history._catalog.engine.begin() as conn:
                conn.execute(
                    update(Deletion).where(Deletion.id == row.id).values({column: original})
                )
            edits += 1
    assert edits == 4 * len(trail.COVERED_FIELDS) - 3
    assert _verify(history).ok
