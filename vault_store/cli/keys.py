"""`vault-store keys ...`: which key versions wrap the stored keys, rotation and re-wrapping."""

from __future__ import annotations

from dataclasses import asdict

import click

from vault_store.cli.common import (
    PROJECT_ID,
    RowProgress,
    emit_json,
    open_vault,
    reporting_errors,
    stdout,
    table_or_json,
)
from vault_store.services.rewrap import DEFAULT_CHUNK_KEYS


@click.group()
def keys() -> None:
    """Key-encryption-key versions: status, rotation (local key file) and re-wrapping."""


@keys.command("status")
@click.option("--project", type=PROJECT_ID, help="Only this project's rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_status(project: int | None, as_json: bool) -> None:
    """Rows per key version, and the primary: a version with no rows left can be disabled."""
    with reporting_errors(as_json=as_json), open_vault(read_only=True) as vault:
        status = vault.key_status(project_id=project)
    if as_json:
        emit_json({"primary": status.primary, "rows_by_kek": status.rows_by_kek})
        return
    stdout.print(f"primary: {status.primary}", markup=False)
    for kek, count in sorted(status.rows_by_kek.items()):
        marker = "" if kek == status.primary else "  (re-wrap before disabling)"
        stdout.print(f"  {count:>12,}  {kek}{marker}", markup=False)


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rotate(as_json: bool) -> None:
    """Add a new primary version to the local key file (Cloud KMS rotates in Google Cloud)."""
    with reporting_errors(as_json=as_json), open_vault() as vault:
        primary = vault.rotate_local_key()
    table_or_json({"primary": primary}, "keys rotate", as_json=as_json)


@keys.command("rewrap")
@click.option("--project", type=PROJECT_ID, help="Only this project's keys.")
@click.option(
    "--by",
    "actor",
    default="vault-store keys rewrap",
    show_default=True,
    help="Who runs it (kept in the audit trail).",
)
@click.option(
    "--chunk-keys",
    type=click.IntRange(1),
    default=DEFAULT_CHUNK_KEYS,
    show_default=True,
    help="Replays' keys re-wrapped per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rewrap(project: int | None, actor: str, chunk_keys: int, as_json: bool) -> None:
    """Re-wrap every stored data key under the KMS primary version (resumable: run it again)."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        RowProgress("re-wrapping", None) as advance,
    ):
        result = vault.rewrap_keys(
            actor=actor,
            project_id=project,
            chunk_keys=chunk_keys,
            progress=lambda keys_done, rows: advance(rows, keys_done),
        )
    table_or_json(asdict(result), "keys rewrap", as_json=as_json)
