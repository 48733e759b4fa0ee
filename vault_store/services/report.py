"""Compliance report: every deletion in a period, its proof, and what may still hold a copy.

The report is built once as plain data (`build`) and rendered as JSON, CSV (one row per
deletion) or HTML (tables and two SVG charts, printable to PDF). Proof is checked live when the
report is made: no range row of the target remains (the wrapped keys lived only there), and a
read of the target answers "shredded".
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault_store.catalog import Catalog
from vault_store.catalog.reports import ReportedDeletion
from vault_store.errors import ReplayNotFound, ReplayShredded
from vault_store.services.reader import Reader
from vault_store.settings import CopyPolicy

FORMATS = ("json", "csv", "html")


@dataclass(frozen=True, slots=True)
class Period:
    """[since, until) in UTC."""

    since: datetime
    until: datetime


def build(
    catalog: Catalog,
    reader: Reader,
    period: Period,
    *,
    project_id: int | None = None,
    copies: CopyPolicy | None = None,
    soft_delete_seconds: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report as plain data; `reader` attempts the reads that prove a deletion.

    Every field of a deletion is the audit chain's value (a row edited since is flagged in
    `audit_mismatches`). A residual copy is listed only where one exists: catalog backups and a
    scheduled KMS key version destruction as `copies` declares them, GCS soft delete only with
    `soft_delete_seconds` (the facade reads it from a gs:// store's bucket).
    """
    copies = copies or CopyPolicy()
    now = now or datetime.now(UTC)
    recorded = catalog.reports.chained_deletions(period.since, period.until, project_id=project_id)
    deletions = [
        _deletion(catalog, reader, row, copies, soft_delete_seconds, now) for row in recorded
    ]
    latencies = [d["hours_to_complete"] for d in deletions if d["hours_to_complete"] is not None]
    return {
        "generated_at": now.isoformat(),
        "period": {"since": period.since.isoformat(), "until": period.until.isoformat()},
        "project_id": project_id,
        "deadline_days": copies.deadline_days,
        "summary": {
            "requests": len(deletions),
            "completed": sum(d["status"] == "done" for d in deletions),
            "nothing_held": sum(d["status"] == "nothing_held" for d in deletions),
            "pending": sum(d["status"] not in ("done", "nothing_held") for d in deletions),
            "audit_mismatches": sum(bool(d["audit_mismatches"]) for d in deletions),
            "overdue": sum(d["overdue"] for d in deletions),
            "completed_late": sum(d["within_deadline"] is False for d in deletions),
            "proof_failures": sum(
                not d["proof"]["holds"] for d in deletions if d["status"] == "done"
            ),
            "median_hours_to_complete": _round(statistics.median(latencies)) if latencies else None,
            "max_hours_to_complete": _round(max(latencies)) if latencies else None,
            "rows_deleted": sum(d["rows_deleted"] or 0 for d in deletions),
            "bytes_shredded": sum(d["bytes_shredded"] or 0 for d in deletions),
        },
        "deletions": deletions,
        "storage_by_retention": _storage_by_retention(catalog),
        "storage_over_period": _storage_over_period(catalog, period),
        "copy_policy": {
            "catalog_backup_retention_days": copies.backup_retention_days,
            "kms_key_destroy_days": copies.kms_destroy_days,
            "gcs_soft_delete_days": None
            if soft_delete_seconds is None
            else _round(soft_delete_seconds / 86400),
        },
    }


def _deletion(
    catalog: Catalog,
    reader: Reader,
    row: ReportedDeletion,
    copies: CopyPolicy,
    soft_delete_seconds: int | None,
    now: datetime,
) -> dict[str, Any]:
    requested, completed, overwritten = row.requested_at, row.completed_at, row.overwrite_done_at
    deadline = requested + timedelta(days=copies.deadline_days)
    done = row.status == "done"
    finished_at = overwritten if row.overwrite_requested and overwritten else completed
    hours = (finished_at - requested).total_seconds() / 3600 if done and finished_at else None
    residual = []
    if completed and row.status != "nothing_held":
        if copies.backup_retention_days is not None:
            until = completed + timedelta(days=copies.backup_retention_days)
            residual.append({"holder": "catalog backups", "until": until.isoformat()})
        if copies.kms_destroy_days is not None:
            until = completed + timedelta(days=copies.kms_destroy_days)
            residual.append({"holder": "KMS key version", "until": until.isoformat()})
        if overwritten and soft_delete_seconds:
            until = overwritten + timedelta(seconds=soft_delete_seconds)
            residual.append({"holder": "GCS soft delete", "until": until.isoformat()})
        residual += _compaction_copies(catalog, row, soft_delete_seconds)
    return {
        "id": row.id,
        "scope": row.scope,
        "project_id": row.project_id,
        "target": row.target,
        "target_label": _target_label(row),
        "requested_by": row.requested_by,
        "reason": row.reason,
        "requested_at": requested.isoformat(),
        "completed_at": completed.isoformat() if completed else None,
        "overwrite_done_at": overwritten.isoformat() if overwritten else None,
        "status": row.status,
        "method": "shred + null-overwrite" if row.overwrite_requested else "shred",
        "deadline": deadline.isoformat(),
        "hours_to_complete": _round(hours) if hours is not None else None,
        "within_deadline": (finished_at is not None and finished_at <= deadline) if done else None,
        "overdue": not done and now > deadline,
        "rows_deleted": row.rows_deleted,
        "bytes_shredded": row.bytes_shredded,
        "replays_deleted": row.replays_deleted,
        "verified_rows_left": row.verified_rows_left,
        "verified_at": row.verified_at.isoformat() if row.verified_at else None,
        "previous_deletion_id": row.previous_deletion_id,
        "audit_mismatches": list(row.audit_mismatches),
        "proof": _proof(catalog, reader, row) if done else {"holds": False, "checked": False},
        "copies_may_remain": residual,
    }


def _compaction_copies(
    catalog: Catalog, row: ReportedDeletion, soft_delete_seconds: int | None
) -> list[dict[str, Any]]:
    """Copies compaction left in source blobs: there until GC deletes the blob (at the latest
    when it expires), then, on GCS, in soft delete for its window. Unreadable (their keys went
    with the rows); zeroed too by a forced overwrite."""
    replays = catalog.reports.remains(row).replays if row.scope != "project" else ()
    copies = catalog.compaction.superseded_copies(row.project_id, row.scope, replays)
    found: list[dict[str, Any]] = []
    if copies.in_store and copies.blob_expiry is not None:
        until = copies.blob_expiry + timedelta(seconds=soft_delete_seconds or 0)
        found.append(
            {
                "holder": "compaction's source blobs",
                "until": until.isoformat(),
                "ranges": copies.in_store,
                "bytes": copies.bytes_in_store,
            }
        )
    if copies.collected and copies.last_collected_at is not None and soft_delete_seconds:
        until = copies.last_collected_at + timedelta(seconds=soft_delete_seconds)
        found.append(
            {
                "holder": "GCS soft delete (compaction's sources)",
                "until": until.isoformat(),
                "ranges": copies.collected,
            }
        )
    return found


def _target_label(row: ReportedDeletion) -> str:
    """What the deletion was for, in words: the replay, the user (by keyed hash), the project."""
    if row.scope == "replay":
        return f"replay {row.target}"
    if row.scope == "user":
        return (
            f"user with keyed hash {row.target} (HMAC-SHA256 under the catalog's subject key; "
            "the identifier as requested is not kept)"
        )
    return f"every replay of project {row.project_id}"


def _proof(catalog: Catalog, reader: Reader, row: ReportedDeletion) -> dict[str, Any]:
    """Check, now, that nothing of the target is left: no rows, reads answer shredded.

    A user deletion's replays are its tombstones, and their number must match what the
    deletion recorded.
    """
    remains = catalog.reports.remains(row)
    replays = list(remains.replays)
    if row.scope == "project":
        replays = [uuid.uuid4().hex]  # any replay of a deleted project must answer shredded
    answers = [_read_answer(reader, row.project_id, replay) for replay in replays[:20]]
    complete_record = row.scope != "user" or len(replays) == row.replays_deleted
    return {
        "checked": True,
        "range_rows_remaining": remains.range_rows,
        "wrapped_keys_remaining": remains.range_rows,  # a wrapped key exists only on a range row
        "read_attempt": sorted(set(answers)),
        "overwrite_ranges_pending": remains.overwrites_pending,
        "holds": remains.range_rows == 0
        and complete_record
        and all(answer == "shredded" for answer in answers)
        and (bool(answers) or row.replays_deleted == 0)
        and not remains.overwrites_pending,
    }


def _read_answer(reader: Reader, project_id: int, replay_id: str) -> str:
    try:
        next(reader.segments(project_id, replay_id), None)
    except ReplayShredded:
        return "shredded"
    except ReplayNotFound:
        return "not found"
    return "readable"


def _storage_by_retention(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "retention_days": s.retention_days,
            "blobs": s.blobs,
            "bytes_stored": s.bytes_stored,
            "live_bytes": s.live_bytes,
            "dead_bytes": s.bytes_stored - s.live_bytes,
        }
        for s in catalog.reports.storage_by_retention()
    ]


def _storage_over_period(catalog: Catalog, period: Period) -> list[dict[str, Any]]:
    """Bytes stored at the end of each day: blobs created by then and not yet expired."""
    blobs = catalog.reports.blob_lifetimes()
    days: list[dict[str, Any]] = []
    day = period.since
    while day < period.until and len(days) < 400:
        end = day + timedelta(days=1)
        stored = sum(b.size for b in blobs if b.created_at < end <= b.expires_at)
        days.append({"date": day.date().isoformat(), "bytes_stored": int(stored)})
        day = end
    return days


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as JSON, CSV or HTML text."""
    if fmt == "json":
        return json.dumps(report, indent=2)
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


_CSV_COLUMNS = (
    "id", "scope", "project_id", "target", "requested_by", "reason", "requested_at",
    "completed_at", "overwrite_done_at", "status", "method", "deadline", "hours_to_complete",
    "within_deadline", "overdue", "rows_deleted", "bytes_shredded", "replays_deleted",
)  # fmt: skip


def _csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*_CSV_COLUMNS, "proof_holds", "copies_may_remain_until"])
    for entry in report["deletions"]:
        latest = max((c["until"] for c in entry["copies_may_remain"]), default="")
        writer.writerow([*(entry[c] for c in _CSV_COLUMNS), entry["proof"]["holds"], latest])
    return out.getvalue()


def _html(report: dict[str, Any]) -> str:
    e = html.escape
    summary = report["summary"]
    rows = "\n".join(
        _ROW.format(
            cls="overdue" if d["overdue"] else ("pending" if d["status"] != "done" else ""),
            id=e(d["id"][:12]),
            scope=e(d["scope"]),
            target=e(d["target_label"]),
            project=d["project_id"],
            by=e(d["requested_by"]),
            reason=e(d["reason"]),
            requested=e(d["requested_at"][:19].replace("T", " ")),
            completed=e((d["completed_at"] or "")[:19].replace("T", " ")),
            hours="" if d["hours_to_complete"] is None else f"{d['hours_to_complete']:.2f}",
            status=e(
                d["status"].replace("_", " ")
                + (" (OVERDUE)" if d["overdue"] else "")
                + (
                    f" (row edited: {', '.join(d['audit_mismatches'])}; chain values shown)"
                    if d["audit_mismatches"]
                    else ""
                )
            ),
            method=e(d["method"]),
            rows="in progress" if d["rows_deleted"] is None else f"{d['rows_deleted']:,}",
            proof=_proof_cell(d),
            copies="<br>".join(
                f"{e(c['holder'])}: until {e(c['until'][:10])}" for c in d["copies_may_remain"]
            ),
        )
        for d in report["deletions"]
    )
    storage = "\n".join(
        f"<tr><td>{s['retention_days']} days</td><td>{s['blobs']:,}</td>"
        f"<td>{s['bytes_stored']:,}</td><td>{s['live_bytes']:,}</td><td>{s['dead_bytes']:,}</td></tr>"
        for s in report["storage_by_retention"]
    )
    facts = "".join(
        f"<div class='fact'><b>{value}</b><span>{e(label)}</span></div>"
        for label, value in (
            ("requests", summary["requests"]),
            ("completed", summary["completed"]),
            ("pending", summary["pending"]),
            ("nothing held", summary["nothing_held"]),
            ("overdue", summary["overdue"]),
            ("completed late", summary["completed_late"]),
            ("proof failures", summary["proof_failures"]),
            (
                "median hours to complete",
                "n/a"
                if summary["median_hours_to_complete"] is None
                else f"{summary['median_hours_to_complete']:.2f}",
            ),
        )
    )
    period = report["period"]
    return _PAGE.format(
        title=e(f"vault-store deletion report {period['since'][:10]} to {period['until'][:10]}"),
        generated=e(report["generated_at"][:19].replace("T", " ")),
        project="all projects"
        if report["project_id"] is None
        else f"project {report['project_id']}",
        deadline=report["deadline_days"],
        facts=facts,
        latency_chart=_bar_chart(
            [
                (d["id"][:8], d["hours_to_complete"] or 0.0)
                for d in report["deletions"]
                if d["status"] == "done"
            ],
            unit="hours",
        ),
        storage_chart=_line_chart(
            [(s["date"], s["bytes_stored"] / 1e6) for s in report["storage_over_period"]], unit="MB"
        ),
        rows=rows or "<tr><td colspan='14'>No deletion requests in this period.</td></tr>",
        storage=storage or "<tr><td colspan='5'>Nothing stored.</td></tr>",
        copies=_copies_section(report["copy_policy"]),
    )


def _copies_section(policy: dict[str, Any]) -> str:
    """Only the copies that exist: as the operator declared them, and a gs:// bucket's policy."""
    items = []
    if policy["catalog_backup_retention_days"] is not None:
        items.append(
            "<li><b>catalog backups</b>: backups and replicas of the catalog keep the wrapped keys "
            f"until they expire ({policy['catalog_backup_retention_days']} days, as declared).</li>"
        )
    if policy["kms_key_destroy_days"] is not None:
        items.append(
            "<li><b>KMS key version</b>: the wrapped keys in those backups open only with the key "
            "version that wrapped them, whose destruction is scheduled "
            f"{policy['kms_key_destroy_days']} days on (as declared).</li>"
        )
    if policy["gcs_soft_delete_days"]:
        items.append(
            "<li><b>GCS soft delete</b>: a forced overwrite leaves the previous object generation "
            f"in soft delete for {policy['gcs_soft_delete_days']:g} days "
            "(the bucket's policy).</li>"
        )
    if not items:
        return "<p>None: no backup, scheduled key destruction or soft delete is declared.</p>"
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


def _proof_cell(entry: dict[str, Any]) -> str:
    proof = entry["proof"]
    if not proof.get("checked"):
        return "not yet (pending)"
    mark = "holds" if proof["holds"] else "FAILS"
    return html.escape(
        f"{mark}: {proof['range_rows_remaining']} rows left, read answered "
        f"{', '.join(proof['read_attempt'])}"
    )


def _bar_chart(points: list[tuple[str, float]], *, unit: str) -> str:
    if not points:
        return "<p class='empty'>No completed deletions in this period.</p>"
    width, height, pad = 640, 180, 40
    top = max(value for _, value in points) or 1.0
    bar = min((width - pad) / len(points), 40.0)
    bars = "".join(
        f"<rect x='{pad + i * bar + 1:.1f}' y='{height - 20 - (v / top) * (height - 40):.1f}' "
        f"width='{max(bar - 2, 1):.1f}' height='{(v / top) * (height - 40):.1f}'>"
        f"<title>{html.escape(label)}: {v:.3f} {unit}</title></rect>"
        for i, (label, v) in enumerate(points)
    )
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='deletion latency'>"
        f"<text x='0' y='14'>{top:.3g} {unit}</text><text x='0' y='{height - 22}'>0</text>"
        f"<line x1='{pad}' y1='{height - 20}' x2='{width}' y2='{height - 20}'/>{bars}</svg>"
    )


def _line_chart(points: list[tuple[str, float]], *, unit: str) -> str:
    if len(points) < 2:
        return "<p class='empty'>Not enough days in this period for a chart.</p>"
    width, height, pad = 640, 180, 40
    top = max(value for _, value in points) or 1.0
    step = (width - pad) / (len(points) - 1)
    path = " ".join(
        f"{pad + i * step:.1f},{height - 20 - (v / top) * (height - 40):.1f}"
        for i, (_, v) in enumerate(points)
    )
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='storage over the period'>"
        f"<text x='0' y='14'>{top:.3g} {unit}</text><text x='0' y='{height - 22}'>0</text>"
        f"<text x='{pad}' y='{height - 4}'>{points[0][0]}</text>"
        f"<text x='{width - 80}' y='{height - 4}'>{points[-1][0]}</text>"
        f"<line x1='{pad}' y1='{height - 20}' x2='{width}' y2='{height - 20}'/>"
        f"<polyline points='{path}'/></svg>"
    )


def _round(value: float) -> float:
    return round(value, 4)


_ROW = (
    "<tr class='{cls}'><td><code>{id}</code></td><td>{scope}</td><td>{target}</td>"
    "<td>{project}</td>"
    "<td>{by}</td><td>{reason}</td><td>{requested}</td><td>{completed}</td><td>{hours}</td>"
    "<td>{status}</td><td>{method}</td><td>{rows}</td><td>{proof}</td>"
    "<td class='copies'>{copies}</td></tr>"
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1a1a1a; }}
 h1 {{ font-size: 1.5em; margin-bottom: .2em; }} h2 {{ margin-top: 1.6em; }}
 .meta {{ color: #555; }}
 .facts {{ display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }}
 .fact {{ border: 1px solid #ccc; border-radius: 6px; padding: .5em 1em; min-width: 7em; }}
 .fact b {{ display: block; font-size: 1.6em; }} .fact span {{ color: #555; }}
 table {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
 th, td {{ border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }}
 th {{ background: #f2f2f2; }}
 tr.overdue td {{ background: #fde2e2; }} tr.pending td {{ background: #fff6d6; }}
 svg {{ width: 100%; max-width: 640px; height: auto; border: 1px solid #ddd; }}
 svg rect {{ fill: #3b6ea5; }} svg polyline {{ fill: none; stroke: #3b6ea5; stroke-width: 2; }}
 svg line {{ stroke: #999; }} svg text {{ font-size: 11px; fill: #555; }}
 td.copies {{ white-space: nowrap; }}
 @page {{ size: A4 landscape; margin: 1cm; }}
 @media print {{
   body {{ margin: 0; font-size: 12px; }}
   h2 {{ break-after: avoid; }} tr, .fact, svg, section {{ break-inside: avoid; }}
 }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">Generated {generated} UTC for {project}. Deadline per request: {deadline} days.</p>
<div class="facts">{facts}</div>
<h2>Time to complete</h2>{latency_chart}
<h2>Deletion requests</h2>
<table><thead><tr><th>deletion</th><th>scope</th><th>target</th><th>project</th>
<th>requested by</th>
<th>reason</th><th>requested (UTC)</th><th>completed (UTC)</th><th>hours</th><th>status</th>
<th>method</th><th>rows</th><th>proof</th><th>copies may remain</th></tr></thead>
<tbody>{rows}</tbody></table>
<section><h2>Storage over the period</h2>{storage_chart}</section>
<section><h2>Live and dead bytes by retention class</h2>
<table><thead><tr><th>retention</th><th>blobs</th><th>bytes stored</th><th>live bytes</th>
<th>dead bytes</th></tr></thead><tbody>{storage}</tbody></table></section>
<section><h2>What may still hold a copy</h2>
{copies}</section>
</body></html>
"""
