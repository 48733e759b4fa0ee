"""Read a replay: rows in segment order, coalesced ranged GETs in parallel, frames opened."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog, RangeRecord, ReplayState
from vault_store.core.coalesce import Fetch, plan_fetches
from vault_store.core.crypto import DataKey, FrameIdentity, open_frame
from vault_store.core.keycache import KeyCache
from vault_store.core.parts import RECORDING, merge
from vault_store.errors import CorruptData, ReplayNotFound, ReplayShredded
from vault_store.kms import KeyContext, Kms
from vault_store.settings import ReadPolicy


@dataclass(frozen=True, slots=True)
class StoredSegment:
    """One decrypted segment part: its identity and its rrweb JSON."""

    segment_id: int
    part: str
    body: bytes


@dataclass(slots=True)
class ReadCounters:
    """What reads cost: ranged GETs issued, bytes fetched, frames opened, KMS unwraps."""

    gets: int = 0
    bytes_fetched: int = 0
    frames: int = 0
    unwraps: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, *, gets: int = 0, bytes_fetched: int = 0, frames: int = 0, unwraps: int = 0
    ) -> None:
        """Add to the counters (thread-safe)."""
        with self._lock:
            self.gets += gets
            self.bytes_fetched += bytes_fetched
            self.frames += frames
            self.unwraps += unwraps


class Reader:
    """Streams a replay's segments; shares one thread pool and one key cache across reads."""

    def __init__(
        self,
        catalog: Catalog,
        blob_store: BlobStore,
        kms: Kms,
        keys: KeyCache[DataKey],
        policy: ReadPolicy,
    ) -> None:
        self._catalog = catalog
        self._blob_store = blob_store
        self._kms = kms
        self._keys = keys
        self._policy = policy
        self._pool = ThreadPoolExecutor(policy.concurrency, thread_name_prefix="vault-read")
        # Pages load on their own threads, which wait on the fetch pool: never on the pool
        # itself, so a busy pool cannot deadlock waiting for its own workers.
        self._pages_ahead = ThreadPoolExecutor(
            policy.concurrency * 2, thread_name_prefix="vault-page"
        )
        self.counters = ReadCounters()

    def close(self) -> None:
        """Stop the page and fetch threads."""
        self._pages_ahead.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def segments(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Iterator[StoredSegment]:
        """Segment parts with start <= id < stop, in order, one page of rows at a time.

        `only` limits the typed parts read (only their ranges are fetched); rows stored whole
        (part "recording") are always read, as they hold every part. ReplayShredded or
        ReplayNotFound is raised before anything is yielded.
        """
        for _segment_ids, opened in self._pages(
            project_id, replay_id, start=start, stop=stop, only=only
        ):
            yield from opened

    def merged(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Iterator[list[tuple[int, bytes]]]:
        """Pages of (segment id, the segment's events of the `only` parts as a JSON array).

        Every segment of the range appears, with [] when it holds none of those parts: a view
        has the same shape as the whole recording.
        """
        for segment_ids, opened in self._pages(
            project_id, replay_id, start=start, stop=stop, only=only
        ):
            by_segment: dict[int, list[tuple[str, bytes]]] = {}
            for stored in opened:
                by_segment.setdefault(stored.segment_id, []).append((stored.part, stored.body))
            yield [(sid, merge(by_segment.get(sid, []), only)) for sid in segment_ids]

    def recording(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Iterator[bytes]:
        """The merged recording as one JSON array, one element per segment, one chunk per page.

        A chunk per page (not per segment) keeps servers from paying per-piece costs, and the
        first page still leaves as soon as it is decoded.
        """
        pages = self.merged(project_id, replay_id, start=start, stop=stop, only=only)
        # Decode the first page before emitting "[": a missing replay must fail, not half-answer.
        first = next(pages, None)
        yield b"["
        written = 0
        for page in itertools.chain([first] if first else [], pages):
            pieces: list[bytes] = []
            for _segment_id, body in page:
                if written:
                    pieces.append(b",")
                pieces.append(body)
                written += 1
            yield b"".join(pieces)
        yield b"]"

    def _pages(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int,
        stop: int | None,
        only: frozenset[str] | None,
    ) -> Iterator[tuple[list[int], list[StoredSegment]]]:
        """Pages as (every segment id in the page, the opened rows of the wanted parts).

        Rows of every part are listed (cheap metadata, and it tells which segments exist), but
        only the wanted parts' ranges are fetched; rows stored whole always are.
        """
        self._raise_if_unreadable(project_id, replay_id)
        rows = self._page(project_id, replay_id, start=start, after=None, stop=stop)
        loading = self._pages_ahead.submit(self._load, rows, only) if rows else None
        while loading is not None:
            page = loading.result()
            # Start the next page before handing this one out: its blobs are fetched and
            # decoded while the caller streams this one (at most two pages in memory).
            rows = self._page(project_id, replay_id, start=start, after=page[0][-1], stop=stop)
            loading = self._pages_ahead.submit(self._load, rows, only) if rows else None
            yield page

    def _load(
        self, rows: list[RangeRecord], only: frozenset[str] | None
    ) -> tuple[list[int], list[StoredSegment]]:
        wanted = [r for r in rows if only is None or r.part in only or r.part == RECORDING]
        segment_ids = list(dict.fromkeys(row.segment_id for row in rows))
        return segment_ids, list(self._open_page(wanted)) if wanted else []

    def _page(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int,
        after: int | None,
        stop: int | None,
    ) -> list[RangeRecord]:
        # Up to four typed parts per segment: ask for enough rows to fill a page of segments.
        limit = self._policy.page_segments * 4
        rows = self._catalog.replay_ranges(
            project_id,
            replay_id,
            min_segment=start,
            after_segment=after,
            stop_segment=stop,
            limit=limit,
        )
        # A page must end on a whole segment (several parts share a segment id): drop a
        # possibly incomplete last segment unless it is all the page holds.
        if len(rows) == limit and rows[0].segment_id != rows[-1].segment_id:
            last = rows[-1].segment_id
            rows = [row for row in rows if row.segment_id != last]
        # And hold at most page_segments segments, so the first page leaves early.
        segments: set[int] = set()
        for position, row in enumerate(rows):
            segments.add(row.segment_id)
            if len(segments) > self._policy.page_segments:
                return rows[:position]
        return rows

    def _raise_if_unreadable(self, project_id: int, replay_id: str) -> None:
        state = self._catalog.replay_state(project_id, replay_id)
        if state is ReplayState.SHREDDED:
            raise ReplayShredded(f"replay {replay_id} of project {project_id} was deleted")
        if state is ReplayState.UNKNOWN:
            raise ReplayNotFound(f"replay {replay_id} of project {project_id} not found")

    def _open_page(self, rows: Sequence[RangeRecord]) -> Iterator[StoredSegment]:
        """Fetch the page's coalesced ranges in parallel, then decrypt its frames in parallel.

        Coalescing makes few, large GETs; decoding per frame (not per GET) keeps every thread
        busy even when a whole page comes back in one GET. `map` keeps row order, so an
        integrity error names the earliest bad segment.
        """
        fetches = plan_fetches(
            [(row.blob_path, row.start, row.stop) for row in rows],
            gap=self._policy.gap_bytes,
            max_span=self._policy.max_fetch_bytes,
        )
        frames: list[bytes] = [b""] * len(rows)
        for fetch, data in zip(fetches, self._pool.map(self._fetch, fetches), strict=True):
            for index in fetch.members:
                row = rows[index]
                frames[index] = data[row.start - fetch.start : row.stop - fetch.start]
        bodies = self._pool.map(
            lambda index: self._open(rows[index], frames[index]), range(len(rows))
        )
        for row, body in zip(rows, bodies, strict=True):
            yield StoredSegment(row.segment_id, row.part, body)

    def _fetch(self, fetch: Fetch) -> bytes:
        data = self._blob_store.get_range(fetch.blob_path, fetch.start, fetch.stop)
        self.counters.add(gets=1, bytes_fetched=len(data), frames=len(fetch.members))
        return data

    def _open(self, row: RangeRecord, frame: bytes) -> bytes:
        identity = FrameIdentity(row.project_id, row.replay_id, row.segment_id, row.part)
        return open_frame(frame, self._data_key(row), identity)

    def _data_key(self, row: RangeRecord) -> DataKey:
        owner = (row.project_id, row.replay_id)

        def unwrap() -> DataKey:
            self.counters.add(unwraps=1)
            return self._kms.unwrap(row.wrapped_dek, KeyContext(*owner))

        key = self._keys.get_or_load((*owner, row.wrapped_dek), owner, unwrap)
        # AES-GCM does not commit to its key: check the row's commitment before decrypting.
        if not key.matches(row.key_check):
            raise CorruptData(f"segment {row.segment_id} failed its key check")
        return key
