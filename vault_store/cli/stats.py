"""`vault-store stats` and `vault-store migrate`: what is stored, and the catalog schema."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.table import Table

from vault_store.cli.common import emit_json, open_vault, reporting_errors, stdout, vault_home
from vault_store.settings import Settings
from vault_store.vault import Vault


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(as_json: bool) -> None:
    """The home, replays, segments, blobs, bytes stored, live and dead bytes, segments per blob,
    compacted blobs and the superseded copies waiting for GC.

    Exits 2 if the home does not exist (nothing was stored there): it creates nothing.
    """
    with reporting_errors(as_json=as_json), open_vault(read_only=True) as vault:
        totals = vault.stats()
        compaction = vault.compaction_stats()
        home = vault_home()
    document = (
        {"home": str(home)}
        | asdict(totals)
        | {
            "dead_bytes": totals.dead_bytes,
            "segments_per_blob": round(totals.segments_per_blob, 2),
        }
        | asdict(compaction)
    )
    if as_json:
        emit_json(document)
        return
    table = Table(title="vault-store stats", show_header=False)
    for label, value in document.items():
        table.add_row(
            label.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value)
        )
    stdout.print(table)


@click.command()
def migrate() -> None:
    """Bring the catalog schema to the newest migration (safe to repeat)."""
    with reporting_errors(as_json=False):
        Vault.migrate_catalog(Settings.from_env())
    click.echo("catalog schema is up to date")
