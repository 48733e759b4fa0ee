"""Plan ranged reads: merge ranges of one blob that touch or lie closer than a gap (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fetch:
    """One ranged GET: [start, stop) of a blob, serving the wanted ranges listed in `members`."""

    blob_path: str
    start: int
    stop: int
    members: tuple[int, ...]


def plan_fetches(ranges: Sequence[tuple[str, int, int]], *, gap: int, max_span: int) -> list[Fetch]:
    """Group (blob_path, start, stop) ranges into fetches; `members` index into `ranges`.

    Ranges of one blob are merged when the hole between them is at most `gap` bytes and the
    merged span stays within `max_span` (one oversized range still gets its own fetch).
    Fetches come out in the order of their first member, so early segments arrive early.
    """
    by_blob: dict[str, list[int]] = defaultdict(list)
    for index, (blob, _start, _stop) in enumerate(ranges):
        by_blob[blob].append(index)
    fetches: list[Fetch] = []
    for blob, indices in by_blob.items():
        indices.sort(key=lambda i: (ranges[i][1], ranges[i][2]))
        group = [indices[0]]
        start, stop = ranges[indices[0]][1], ranges[indices[0]][2]
        for index in indices[1:]:
            _, next_start, next_stop = ranges[index]
            merged_stop = max(stop, next_stop)
            if next_start - stop <= gap and merged_stop - start <= max_span:
                group.append(index)
                stop = merged_stop
            else:
                fetches.append(Fetch(blob, start, stop, tuple(group)))
                group, start, stop = [index], next_start, next_stop
        fetches.append(Fetch(blob, start, stop, tuple(group)))
    fetches.sort(key=lambda fetch: min(fetch.members))
    return fetches
