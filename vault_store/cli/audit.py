"""`vault-store audit verify` and `vault-store audit report`: proof of what was deleted."""

from __future__ import annotations

import sys

import click

from vault_store import audit as audit_trail
from vault_store.cli.common import emit_json, open_vault, reporting_errors, stdout

EXIT_TAMPERED = 1


@click.group()
def audit() -> None:
    """The hash-chained audit trail of deletions, overwrites, GC and retention runs."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(as_json: bool) -> None:
    """Check the chain; exit 1 and name the first bad event if any was edited, removed or
    reordered, or if a deletion lacks its events."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        with vault.catalog.engine.connect() as conn:
            report = audit_trail.verify(conn)
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
        sys.exit(EXIT_TAMPERED)
