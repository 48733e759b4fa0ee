"""`vault-store compact`: finished replays copied into compacted blobs, read in one request."""

from __future__ import annotations

from dataclasses import asdict

import click

from vault_store.cli.common import StepBar, emit_json, open_vault, reporting_errors, stdout


@click.command()
@click.option(
    "--idle-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="A replay with no new segment for this long is finished "
    "(default VAULT_STORE_COMPACT_IDLE_SECONDS, 1800).",
)
@click.option("--dry-run", is_flag=True, help="Plan the compacted blobs; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compact(idle_seconds: float | None, dry_run: bool, as_json: bool) -> None:
    """Copy finished replays' sealed frames unchanged (no key touched) into compacted blobs,
    contiguous in segment order, and repoint their rows; `gc` then deletes the emptied sources."""
    with (
        reporting_errors(as_json=as_json),
        open_vault() as vault,
        StepBar(enabled=not as_json) as progress,
    ):
        result = vault.compact(idle_seconds=idle_seconds, dry_run=dry_run, progress=progress)
    document = asdict(result)
    if as_json:
        emit_json(document)
        return
    verb = "would compact" if dry_run else "compacted"
    stdout.print(
        f"{verb} {result.replays_compacted} of {result.replays_finished} finished replay(s) "
        f"into {result.blobs_written} blob(s): {result.rows_moved:,} rows, "
        f"{result.bytes_copied:,} bytes, read with {result.source_gets:,} ranged GET(s) from "
        f"{result.source_blobs:,} blob(s)"
    )
    if result.replays_skipped:
        stdout.print(f"  skipped {result.replays_skipped} (rows expire too far apart)")
    if result.replays_raced:
        stdout.print(f"  left {result.replays_raced} deleted during the copy (blob removed)")
    for path in result.blob_paths:
        stdout.print(f"  {path}", markup=False)
