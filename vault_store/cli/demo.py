"""`vault-store demo`: the whole main job on the embedded defaults, in seconds."""

from __future__ import annotations

import sys
import time

import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vault_store.cli.common import (
    EXIT_INTEGRITY,
    emit_json,
    open_vault,
    reporting_errors,
    show_progress,
    stderr,
    stdout,
)
from vault_store.cli.ingest_summary import IngestSummary
from vault_store.core.message import parse_message
from vault_store.services.samples import as_messages, as_replays, recordings_or_synthetic
from vault_store.settings import Settings


@click.command()
@click.option("--copies", default=3, show_default=True, help="Replays made from each recording.")
@click.option("--seed", default=1, show_default=True, help="Seed for delivery order.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo(copies: int, seed: int, as_json: bool) -> None:
    """Ingest real recordings as Sentry messages, flush, read one back and check it.

    Messages arrive shuffled, some twice, with zlib and raw JSON bodies, as a relay sends them.
    Data goes to VAULT_STORE_HOME (default ./.vault-store); afterwards try `vault-store stats`
    and `vault-store read` with a printed replay id.
    """
    settings = Settings.from_env()
    recordings, origin = recordings_or_synthetic(settings.recordings)
    replays = as_replays(recordings, copies=copies)
    # Redeliver about 2% and shuffle: segments arrive out of order and twice.
    messages = as_messages(replays, seed=seed, duplicate_fraction=0.02)

    summary = IngestSummary()
    with reporting_errors(as_json=as_json), open_vault() as vault:
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not show_progress(),
        ) as progress:
            task = progress.add_task("ingesting messages", total=len(messages))
            for raw in messages:
                segment = parse_message(raw)
                summary.messages += 1
                summary.ingested(vault.ingest_segment(segment), len(segment.body))
                progress.advance(task)
            summary.flushed(vault.flush())
        ingest_seconds = time.perf_counter() - started

        longest = max(replays, key=lambda replay: len(replay.bodies))
        gets_before = vault.read_counters().gets
        started = time.perf_counter()
        recording = b"".join(vault.read_recording(longest.project_id, longest.replay_id))
        read_seconds = time.perf_counter() - started
        gets = vault.read_counters().gets - gets_before
        events = [event for segment in orjson.loads(recording) for event in segment]
        matches = events == longest.events

    unique_segments = sum(len(replay.bodies) for replay in replays)
    results = {
        "recordings_from": origin,
        "recordings": len(recordings),
        "replays": len(replays),
        "messages": summary.messages,
        "segments_unique": unique_segments,
        "duplicates_ignored": summary.duplicates,
        "blobs_written": summary.blobs_written,
        "segments_per_blob": round(summary.segments_per_blob, 1),
        "objects_if_one_per_segment": unique_segments,
        "write_reduction": round(unique_segments / max(summary.blobs_written, 1), 1),
        "bytes_in": summary.segment_bytes,
        "bytes_stored": summary.bytes_stored,
        "ingest_seconds": round(ingest_seconds, 3),
        "ingest_mb_per_s": round(summary.segment_bytes / 1e6 / max(ingest_seconds, 1e-9), 1),
        "read_replay": {"project": longest.project_id, "replay": longest.replay_id},
        "read_segments": len(longest.bodies),
        "read_events": len(events),
        "read_ranged_gets": gets,
        "read_ms": round(read_seconds * 1000, 1),
        "read_back_equal": matches,
    }
    if as_json:
        emit_json(results)
    else:
        _show(results)
    if not matches:
        stderr.print("[bold red]read-back differs from the original recording[/]")
        sys.exit(EXIT_INTEGRITY)


def _show(results: dict[str, object]) -> None:
    table = Table(title="vault-store demo", show_header=False)
    rows = (
        ("recordings from", results["recordings_from"]),
        ("replays / messages", f"{results['replays']} / {results['messages']}"),
        ("unique segments", results["segments_unique"]),
        ("duplicates ignored", results["duplicates_ignored"]),
        ("blobs written", results["blobs_written"]),
        ("segments per blob", results["segments_per_blob"]),
        (
            "objects written vs one per segment",
            f"{results['blobs_written']} vs {results['objects_if_one_per_segment']} "
            f"({results['write_reduction']}x fewer writes)",
        ),
        ("bytes in / stored", f"{results['bytes_in']:,} / {results['bytes_stored']:,}"),
        ("ingest", f"{results['ingest_seconds']} s ({results['ingest_mb_per_s']} MB/s)"),
        (
            "read back",
            f"{results['read_segments']} segments, {results['read_events']} events, "
            f"{results['read_ranged_gets']} ranged GET(s), {results['read_ms']} ms",
        ),
        ("read-back equal to original", "yes" if results["read_back_equal"] else "NO"),
    )
    for label, value in rows:
        table.add_row(label, str(value))
    stdout.print(table)
    replay = results["read_replay"]
    assert isinstance(replay, dict)
    stdout.print(
        f"try: vault-store read --project {replay['project']} --replay {replay['replay']}"
        " -o replay.json",
        markup=False,
    )
