"""`vault-store audit verify` and `vault-store audit report`: proof of what was deleted."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import click

from vault_store.cli.common import (
    EXIT_INTEGRITY,
    PROJECT_ID,
    atomic_output,
    check_output_path,
    emit_json,
    open_vault,
    reporting_errors,
    stdout,
)
from vault_store.services import report as compliance
from vault_store.settings import Settings


@click.group()
def audit() -> None:
    """The hash-chained audit trail of deletions, overwrites, GC and retention runs."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(as_json: bool) -> None:
    """Check the chain; exit 5 (integrity failure) and name the first bad event if any was
    edited, removed or reordered, or if a deletion lacks its events."""
    with reporting_errors(as_json=as_json), open_vault(read_only=True) as vault:
        report = vault.verify_audit()
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "events": report.events,
                "head": report.head.hex(),
                "first_bad_seq": report.first_bad_seq,
                "problem": report.problem,
            }
        )
    elif report.ok:
        stdout.print(f"audit trail intact: {report.events} events, head {report.head.hex()}")
    else:
        stdout.print(f"[bold red]audit trail broken:[/] {report.problem}")
    if not report.ok:
        sys.exit(EXIT_INTEGRITY)


@audit.command("report")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (UTC).")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Day after the last."
)
@click.option("--project", type=PROJECT_ID, help="Only this project.")
@click.option(
    "--format", "fmt", type=click.Choice(compliance.FORMATS), default="html", show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def report(since: datetime, until: datetime, project: int | None, fmt: str, output: Path) -> None:
    """Every deletion requested in [SINCE, UNTIL): requester, reason, scope, times against the
    deadline, method, counts, proof, and what may still hold a copy until when."""
    if until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    with reporting_errors(as_json=False):
        # Before the report is computed: a bad path costs nothing and is exit 2 naming it.
        check_output_path(output, "--output")
    with reporting_errors(as_json=False), open_vault(read_only=True) as vault:
        document = vault.deletion_report(
            _day(since.date()),
            _day(until.date()),
            project_id=project,
            copies=Settings.from_env().copies,
        )
    rendered = compliance.render(document, fmt).encode("utf-8")
    with atomic_output(output) as handle:
        handle.write(rendered)
    summary = document["summary"]
    stdout.print(
        f"{output}: {summary['requests']} request(s), {summary['completed']} completed, "
        f"{summary['pending']} pending, {summary['overdue']} overdue",
        markup=False,
    )


def _day(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)
