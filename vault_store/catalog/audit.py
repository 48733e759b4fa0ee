"""The append-only, hash-chained audit trail: write events inside a caller's transaction, verify.

Each event's hash is SHA-256(previous hash || canonical JSON of (seq, at, kind, actor, details)),
with seq assigned as last + 1. Editing an event, removing one, or reordering them breaks the
chain from that point. A chain cannot show that its newest events were cut off, so `verify` also
checks every deletion row against its events, and it reports the head hash for anchoring
elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, text

from vault_store.catalog.models import AuditEvent, Deletion
from vault_store.catalog.records import as_utc

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog

GENESIS = bytes(32)
# Any constant works; it only has to be the same in every process.
_ADVISORY_LOCK = 0x7661756C74  # "vault"
# Events read per round trip when listing them; no connection is held between pages.
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One event as stored."""

    seq: int
    at: datetime
    kind: str
    actor: str
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of a verification: events checked, the first bad one, the head hash."""

    events: int
    head: bytes
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the whole chain and the deletion cross-check held."""
        return self.problem is None


def append(
    conn: Connection,
    *,
    kind: str,
    actor: str,
    details: Mapping[str, Any],
    at: datetime,
) -> AuditRecord:
    """Add one event in the caller's transaction (so it commits with what it records)."""
    if conn.dialect.name == "postgresql":
        # Serialize writers: two appends must never both extend the same previous event.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    last = conn.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq = last[0] + 1 if last else 1
    prev_hash = bytes(last[1]) if last else GENESIS
    at = at.astimezone(UTC)
    details_text = _canonical(details)
    digest = _hash(prev_hash, seq, at, kind, actor, details_text)
    conn.execute(
        insert(AuditEvent).values(
            seq=seq,
            at=at,
            kind=kind,
            actor=actor,
            details=details_text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    return AuditRecord(seq, at, kind, actor, dict(details), prev_hash, digest)


class AuditRepository:
    """The trail's reading side: list the events, verify the chain (each on its own connection)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def events(self, *, since: datetime | None = None) -> Iterator[AuditRecord]:
        """Events in seq order (from `since` on, if given), read a page at a time."""
        after: int | None = None
        while True:
            with self._catalog.connection("audit") as conn:
                page = list(_events(conn, since=since, after_seq=after, limit=_PAGE))
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    def verify(self) -> ChainReport:
        """Recompute the chain; then check each deletion row against its events: every field a
        report prints (target, requester, reason, times, counts, verification, status) must be
        what the chain recorded, so an edit of any one of them is detected.

        The deletions are read before the events: a deletion's row and its events commit
        together, so one committed while this runs cannot look like a cut-off tail.
        """
        with self._catalog.connection("audit") as conn:
            deletions = list(conn.execute(select(Deletion)))
            return _verify(_events(conn), deletions)

    def chained_deletions(self, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """What the chain records of each of these deletions, field by field (see chained)."""
        wanted = set(ids)
        found: dict[str, list[AuditRecord]] = {}
        with self._catalog.connection("audit") as conn:
            events = conn.execute(
                select(AuditEvent)
                .where(AuditEvent.kind.in_(_DELETION_KINDS))
                .order_by(AuditEvent.seq)
            )
            for row in events.yield_per(_PAGE):
                record = _record(row)
                deletion_id = record.details.get("deletion_id")
                if deletion_id in wanted:
                    found.setdefault(str(deletion_id), []).append(record)
        return {deletion_id: chained(events) for deletion_id, events in found.items()}


def _events(
    conn: Connection,
    *,
    since: datetime | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
) -> Iterator[AuditRecord]:
    # No lower bound unless paging: a verification must also see events with odd seq numbers.
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if limit is not None:
        query = query.limit(limit)
    for row in conn.execute(query).yield_per(_PAGE):
        yield _record(row)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        row.seq,
        as_utc(row.at),
        row.kind,
        row.actor,
        json.loads(row.details),
        bytes(row.prev_hash),
        bytes(row.hash),
    )


_DELETION_KINDS = ("deletion.requested", "deletion.completed", "deletion.overwritten")
# The deletion row's fields the chain covers (and a report prints).
COVERED_FIELDS = (
    "scope",
    "project_id",
    "target",
    "requested_by",
    "reason",
    "requested_at",
    "overwrite_requested",
    "previous_deletion_id",
    "status",
    "completed_at",
    "rows_deleted",
    "bytes_shredded",
    "replays_deleted",
    "verified_rows_left",
    "verified_at",
    "overwrite_done_at",
)


def chained(events: Sequence[AuditRecord]) -> dict[str, Any]:
    """A deletion as its events (in chain order) record it: the covered fields they fix.

    Before it completes, the chain fixes the request only: chunk progress (rows and bytes so
    far) is not audited, and a report prints it for no unfinished deletion; the status is then
    "pending" or "running". Events written before a field was audited do not
    fix it (an old event's details cannot be edited without breaking the chain).
    """
    view: dict[str, Any] = {}
    for event in events:
        details = event.details
        if event.kind == "deletion.requested":
            view.update(
                scope=details.get("scope"),
                project_id=details.get("project_id"),
                target=details.get("target"),
                requested_by=event.actor,
                reason=details.get("reason"),
                requested_at=event.at,
                overwrite_requested=details.get("overwrite"),
            )
            if "status" in details:
                view["previous_deletion_id"] = details.get("previous_deletion_id")
                view["replays_deleted"] = details.get("replays_deleted")
                if details["status"] == "nothing_held":
                    view.update(
                        status="nothing_held",
                        completed_at=event.at,
                        verified_at=event.at,
                        verified_rows_left=0,
                        rows_deleted=0,
                        bytes_shredded=0,
                        replays_deleted=0,
                        overwrite_done_at=None,
                    )
        elif event.kind == "deletion.completed":
            pending = details.get("overwrite_ranges_pending", 0)
            view.update(
                status=details.get("status") or ("overwrite_pending" if pending else "done"),
                completed_at=event.at,
                rows_deleted=details.get("rows_deleted"),
                bytes_shredded=details.get("bytes_shredded"),
                replays_deleted=details.get("replays_deleted"),
                overwrite_done_at=event.at
                if view.get("overwrite_requested") and not pending
                else None,
            )
            if "verified_rows_left" in details:
                view.update(verified_rows_left=details["verified_rows_left"], verified_at=event.at)
        elif event.kind == "deletion.overwritten":
            view.update(status="done", overwrite_done_at=event.at)
    return view


def mismatches(row: Any, view: Mapping[str, Any]) -> list[str]:
    """The covered fields of a deletion row that differ from what its events record."""
    completed = "status" in view
    differ = []
    for name in COVERED_FIELDS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = as_utc(value)
        if not completed and name == "status":
            # Not completed as far as the chain knows: only these states fit.
            if value not in ("pending", "running"):
                differ.append(name)
        elif not completed and name in _SET_ON_COMPLETION:
            if value is not None:
                differ.append(name)
        elif name in view and value != view[name]:
            differ.append(name)
    return differ


_SET_ON_COMPLETION = ("completed_at", "verified_rows_left", "verified_at", "overwrite_done_at")


def _verify(events: Iterator[AuditRecord], deletions: Sequence[Any]) -> ChainReport:
    expected_prev, expected_seq, count = GENESIS, 1, 0
    recorded: dict[str, list[AuditRecord]] = {}
    for event in events:
        count += 1
        if event.seq != expected_seq:
            return _bad(count, expected_prev, event.seq, f"expected event {expected_seq} here")
        if event.prev_hash != expected_prev:
            return _bad(count, expected_prev, event.seq, "does not link to the event before it")
        digest = _hash(
            event.prev_hash, event.seq, event.at, event.kind, event.actor, _canonical(event.details)
        )
        if digest != event.hash:
            return _bad(count, expected_prev, event.seq, "content does not match its hash")
        deletion_id = event.details.get("deletion_id")
        if isinstance(deletion_id, str) and event.kind in _DELETION_KINDS:
            recorded.setdefault(deletion_id, []).append(event)
        expected_prev, expected_seq = event.hash, expected_seq + 1
    for row in deletions:
        found = recorded.get(row.id, [])
        kinds = {event.kind for event in found}
        if "deletion.requested" not in kinds or (
            row.status in ("done", "overwrite_pending") and "deletion.completed" not in kinds
        ):
            return ChainReport(
                count,
                expected_prev,
                None,
                f"deletion {row.id} ({row.status}) is missing its audit events",
            )
        differ = mismatches(row, chained(found))
        if differ:
            return ChainReport(
                count,
                expected_prev,
                None,
                f"deletion {row.id}: {', '.join(differ)} differ from its audit events",
            )
    return ChainReport(count, expected_prev)


def _bad(count: int, head: bytes, seq: int, problem: str) -> ChainReport:
    return ChainReport(count, head, seq, f"event {seq}: {problem}")


def _canonical(details: Mapping[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def _hash(prev: bytes, seq: int, at: datetime, kind: str, actor: str, details: str) -> bytes:
    body = json.dumps(
        [seq, at.astimezone(UTC).isoformat(), kind, actor, details], separators=(",", ":")
    )
    return hashlib.sha256(prev + body.encode()).digest()
