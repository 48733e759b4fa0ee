"""`vault-store ingest`: message files or a plain rrweb recording into the vault."""

from __future__ import annotations

import gzip
import sys
import zlib
from pathlib import Path

import click
from rich.progress import Progress
from rich.table import Table

from vault_store.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    PROJECT_ID,
    emit_json,
    open_vault,
    reporting_errors,
    show_progress,
    stderr,
    stdout,
)
from vault_store.cli.ingest_summary import IngestSummary
from vault_store.core.message import (
    Segment,
    parse_message,
    split_stream,
    validate_replay_id,
    validate_retention_days,
)
from vault_store.core.rrweb import load_events, segment_bodies
from vault_store.errors import InvalidInput
from vault_store.vault import Vault

_GZIP_MAGIC = b"\x1f\x8b"


@click.command(epilog="Exit codes: 0 all stored, 1 some input rejected, 2 usage, 6 backend down.")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rrweb",
    "rrweb_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help='A plain rrweb recording (JSON array of events, or {"result": [...]}) to split; '
    "gzipped (.json.gz) or not, or - for standard input.",
)
@click.option("--project", type=PROJECT_ID, help="Project id for --rrweb.")
@click.option("--replay", help="Replay id for --rrweb: 32 lowercase hex characters.")
@click.option("--retention-days", default=90, show_default=True, help="Retention for --rrweb.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def ingest(
    paths: tuple[Path, ...],
    rrweb_file: Path | None,
    project: int | None,
    replay: str | None,
    retention_days: int,
    as_json: bool,
) -> None:
    """Ingest files of msgpack replay-recording messages (one or several per file).

    Each file holds one Sentry replay-recording message, or a stream of concatenated ones.
    Bad messages are reported and skipped; everything else is flushed before the command ends.
    """
    if not paths and rrweb_file is None:
        raise click.UsageError("give message files, or --rrweb FILE --project N --replay HEX")
    summary = IngestSummary()
    with reporting_errors(as_json=as_json), open_vault() as vault:
        if rrweb_file is not None:
            if project is None or replay is None:
                raise click.UsageError("--rrweb needs --project and --replay")
            try:
                _ingest_rrweb(vault, summary, rrweb_file, project, replay, retention_days)
            except InvalidInput as error:
                if as_json:
                    emit_json({"error": "invalid input", "message": str(error)})
                else:
                    stderr.print(f"[bold red]vault-store: invalid input:[/] {error}")
                sys.exit(EXIT_USAGE)
        _ingest_files(vault, summary, paths)
        summary.flushed(vault.flush())
    _report(summary, as_json=as_json)
    sys.exit(EXIT_REJECTED if summary.rejected else EXIT_OK)


def _ingest_files(vault: Vault, summary: IngestSummary, paths: tuple[Path, ...]) -> None:
    with Progress(console=stderr, transient=True, disable=not show_progress()) as progress:
        task = progress.add_task("ingesting", total=len(paths))
        for path in paths:
            try:
                messages = list(split_stream(path.read_bytes(), source=str(path)))
            except InvalidInput as error:
                summary.reject(str(path), error.problem)
                progress.advance(task)
                continue
            except OSError as error:
                summary.reject(str(path), f"cannot be read ({error.strerror or 'error'})")
                progress.advance(task)
                continue
            for index, raw in enumerate(messages):
                summary.messages += 1
                source = str(path) if len(messages) == 1 else f"{path}#{index}"
                try:
                    segment = parse_message(raw)
                    result = vault.ingest_segment(segment)
                except InvalidInput as error:
                    summary.reject(source, str(error))
                    continue
                summary.ingested(result, len(segment.body))
            progress.advance(task)


def _ingest_rrweb(
    vault: Vault,
    summary: IngestSummary,
    path: Path,
    project: int,
    replay: str,
    retention_days: int,
) -> None:
    replay_id = validate_replay_id(replay, "--replay")
    days = validate_retention_days(retention_days, "--retention-days")
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    source = "standard input" if str(path) == "-" else str(path)
    if raw[:2] == _GZIP_MAGIC:  # by content, not name: stdin has none
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise InvalidInput(source, f"not a valid gzip file ({error})") from None
    events = load_events(raw, source=source)
    for segment_id, body in enumerate(segment_bodies(events)):
        segment = Segment(
            project_id=project,
            replay_id=replay_id,
            segment_id=segment_id,
            body=body,
            retention_days=days,
        )
        summary.ingested(vault.ingest_segment(segment), len(body))


def _report(summary: IngestSummary, *, as_json: bool) -> None:
    if as_json:
        emit_json(summary.as_dict())
        return
    table = Table(title="ingest", show_header=False)
    for label, value in (
        ("messages", summary.messages),
        ("segments received", summary.segments_received),
        ("segments stored", summary.segments),
        ("duplicates (already stored or repeated)", summary.duplicates),
        ("dropped (replay or project deleted)", summary.dropped_deleted),
        ("rejected", len(summary.rejected)),
        ("bytes in (rrweb JSON)", summary.segment_bytes),
        ("blobs written", summary.blobs_written),
        ("bytes written (sealed blobs)", summary.bytes_stored),
        ("segments per blob", f"{summary.segments_per_blob:.1f}"),
    ):
        table.add_row(label, str(value))
    stdout.print(table)
    for rejection in summary.rejected:
        stderr.print(f"rejected {rejection.source}: {rejection.reason}", markup=False)
