"""`vault-store read`: a replay's merged recording, streamed to stdout or a file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click

from vault_store.cli.common import (
    EXIT_CODES_HELP,
    PROJECT_ID,
    atomic_output,
    check_output_path,
    open_vault,
    reporting_errors,
)
from vault_store.core.message import MAX_STORED_ID, validate_replay_id
from vault_store.core.parts import parse_filter
from vault_store.errors import InvalidInput, ReplayNotFound


def parse_segment_range(text: str | None) -> tuple[int, int | None]:
    """``A:B`` -> segments A to B-1; ``A:`` from A; ``:B`` up to B-1; ``A`` just A."""
    if text is None:
        return 0, None
    head, colon, tail = text.partition(":")
    try:
        start = int(head) if head else 0
        stop = (int(tail) if tail else None) if colon else start + 1
    except ValueError:
        raise InvalidInput("--segments", f"expected A:B with whole numbers, got {text!r}") from None
    if start < 0 or (stop is not None and stop < start):
        raise InvalidInput("--segments", f"expected 0 <= A <= B, got {text!r}")
    return start, stop


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--project", type=PROJECT_ID, required=True, help="Project id.")
@click.option("--replay", required=True, help="Replay id: 32 lowercase hex characters.")
@click.option("--segments", help="Segment ids A:B (A included, B excluded), A:, :B or A.")
@click.option(
    "--part",
    "part_names",
    help="Only these parts, comma-separated: dom, console, network, timeline.",
)
@click.option(
    "--video",
    "video_segment",
    type=click.IntRange(0, MAX_STORED_ID),
    help="Write the mobile video of segment SEGMENT instead (exit 3 if it has none).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
def read(
    project: int,
    replay: str,
    segments: str | None,
    part_names: str | None,
    video_segment: int | None,
    output: Path | None,
) -> None:
    """Print a replay's recording: one JSON array, one element per segment (its events).

    With --part, each element holds only the events of those parts, in their original order,
    and only those parts' bytes are fetched. With --video SEGMENT, the bytes of that segment's
    mobile replay video, exactly as sent.
    """
    with reporting_errors(as_json=False):
        replay_id = validate_replay_id(replay, "--replay")
        if video_segment is not None:
            _read_video(project, replay_id, video_segment, segments, part_names, output)
            return
        start, stop = parse_segment_range(segments)
        only = parse_filter(part_names, field="--part")
        if output is not None:
            check_output_path(output, "--output")
        with open_vault(read_only=True) as vault:
            chunks = vault.read_recording(project, replay_id, start=start, stop=stop, only=only)
            # The first chunk is produced only once the replay is known to exist and be readable.
            first = next(chunks)
            if output is None:
                _write(sys.stdout.buffer, first, chunks)
                sys.stdout.buffer.write(b"\n")
                sys.stdout.buffer.flush()
                return
            # Written next to the target and renamed at the end: a failed read leaves no file.
            with atomic_output(output) as handle:
                _write(handle, first, chunks)


def _read_video(
    project: int,
    replay_id: str,
    segment_id: int,
    segments: str | None,
    part_names: str | None,
    output: Path | None,
) -> None:
    if segments is not None or part_names is not None:
        raise InvalidInput("--video", "reads one segment's video: not with --segments or --part")
    if output is not None:
        check_output_path(output, "--output")
    with open_vault(read_only=True) as vault:
        video = vault.read_video(project, replay_id, segment_id)
    if video is None:
        # Exit 3 (not found): the replay exists, the asked-for video does not.
        raise ReplayNotFound(f"segment {segment_id} of replay {replay_id} has no video")
    if output is None:
        sys.stdout.buffer.write(video)
        sys.stdout.buffer.flush()
        return
    with atomic_output(output) as handle:
        handle.write(video)


def _write(handle: BinaryIO, first: bytes, rest: Iterator[bytes]) -> None:
    handle.write(first)
    for chunk in rest:
        handle.write(chunk)
