"""`vault-store sample`: real relay messages made from the shared rrweb recordings."""

from __future__ import annotations

from pathlib import Path

import click

from vault_store.cli.common import (
    atomic_output,
    check_output_path,
    emit_json,
    reporting_errors,
    stderr,
)
from vault_store.services.samples import as_messages, as_replays, recordings_or_synthetic
from vault_store.settings import Settings


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write the messages to (concatenated msgpack, as `ingest` reads).",
)
@click.option(
    "--copies", type=click.IntRange(1), default=1, show_default=True, help="Replays per recording."
)
@click.option("--seed", default=1, show_default=True, help="Seed for delivery order.")
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of messages sent twice, as a relay redelivers.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def sample(output: Path, copies: int, seed: int, duplicates: float, as_json: bool) -> None:
    """Write Sentry replay-recording messages made from the real recordings.

    The recordings are read where they are (VAULT_STORE_RECORDINGS, else the nearest
    shared/data/recordings; synthetic ones if none is found), split into segments and wrapped
    as the relay sends them: shuffled, bodies zlib-compressed or raw JSON. Then:
    `vault-store ingest FILE`.
    """
    with reporting_errors(as_json=as_json):
        check_output_path(output, "--output")
        recordings, origin = recordings_or_synthetic(Settings.from_env().recordings)
        replays = as_replays(recordings, copies=copies)
        messages = as_messages(replays, seed=seed, duplicate_fraction=duplicates)
        with atomic_output(output) as handle:
            for message in messages:
                handle.write(message)
    document = {
        "output": str(output),
        "recordings_from": origin,
        "messages": len(messages),
        "replays": [
            {
                "project": replay.project_id,
                "replay": replay.replay_id,
                "segments": len(replay.bodies),
            }
            for replay in replays
        ],
    }
    if as_json:
        emit_json(document)
        return
    stderr.print(
        f"wrote {len(messages)} messages of {len(replays)} replays from {origin} to {output}; "
        f"next: vault-store ingest {output}",
        markup=False,
    )
