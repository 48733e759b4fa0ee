"""`vault-store catalog maintain`: partitions ahead, expired partitions dropped, sizes."""

from __future__ import annotations

from dataclasses import asdict

import click

from vault_store.cli.common import emit_json, open_vault, reporting_errors, stdout
from vault_store.services.maintenance import DEFAULT_AHEAD_DAYS, PartitionInfo


@click.group()
def catalog() -> None:
    """Catalog housekeeping."""


@catalog.command("maintain")
@click.option(
    "--dry-run", is_flag=True, help="Say what would be created and dropped; change nothing."
)
@click.option(
    "--ahead-days",
    type=click.IntRange(0, 366),
    default=DEFAULT_AHEAD_DAYS,
    show_default=True,
    help="Days of partitions to create ahead for each retention class.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def catalog_maintain(dry_run: bool, ahead_days: int, as_json: bool) -> None:
    """Create partitions ahead, drop fully expired ones, report sizes (PostgreSQL).

    On SQLite there are no partitions: it forgets replays with no rows left and reports the
    file's size. Expired rows outside droppable partitions are left to `vault-store expire`.
    """
    with reporting_errors(as_json=as_json), open_vault() as vault:
        report = vault.maintain_catalog(ahead_days=ahead_days, dry_run=dry_run)
    if as_json:
        emit_json(asdict(report))
        return
    would = "would " if dry_run else ""
    stdout.print(
        f"{would}create {len(report.created)} partition(s), {would}drop {len(report.dropped)} "
        f"({report.rows_dropped:,} rows); {report.replays_forgotten:,} replay(s) forgotten"
    )
    for name in report.dropped:
        stdout.print(f"  {would}drop {name}", markup=False)
    if report.partitioned:
        stdout.print(f"{len(report.partitions)} partition(s), {report.table_bytes:,} bytes:")
        for part in report.partitions:
            stdout.print(
                f"  {part.name}  [{part.first}, {part.end})  {_rows(part)}  "
                f"{part.total_bytes:,} bytes",
                markup=False,
            )
    else:
        stdout.print(f"SQLite catalog (not partitioned): {report.table_bytes:,} bytes")
    for warning in report.warnings:
        stdout.print(f"warning: {warning}", markup=False)


def _rows(part: PartitionInfo) -> str:
    """Exact, estimated, or not known yet: never a bare estimate that reads as a count."""
    if part.rows_exact:
        return f"{part.rows_estimate:,} rows"
    if part.analyzed:
        return f"~{part.rows_estimate:,} rows (estimate)"
    return "rows: no estimate (before ANALYZE)"
