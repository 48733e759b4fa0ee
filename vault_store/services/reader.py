"""Read a replay: rows in segment order, coalesced ranged GETs in parallel, frames opened."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog, RangeRecord, ReplayState
from vault_store.core.coalesce import Fetch, plan_fetches
from vault_store.core.crypto import DataKey, FrameIdentity, open_frame
from vault_store.core.keycache import KeyCache
from vault_store.core.parts import RECORDING, VIDEO, merge
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

    def totals(self) -> ReadTotals:
        """A consistent snapshot of the counters."""
        with self._lock:
            return ReadTotals(self.gets, self.bytes_fetched, self.frames, self.unwraps)


@dataclass(frozen=True, slots=True)
class ReadTotals:
    """The read counters at one moment."""

    gets: int
    bytes_fetched: int
    frames: int
    unwraps: int


@dataclass(frozen=True, slots=True)
class KeyCacheStats:
    """The read key cache: hits, misses (each miss is a KMS unwrap) and keys held now."""

    hits: int
    misses: int
    entries: int


@dataclass(frozen=True, slots=True)
class Page:
    """One planned page of a replay: its rows in (segment, part) order, every segment id they
    hold, the parts to read, and the segment id the next page starts at (None at the end)."""

    project_id: int
    replay_id: str
    rows: tuple[RangeRecord, ...]
    segment_ids: tuple[int, ...]
    only: frozenset[str] | None
    next_cursor: int | None


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

    def key_cache_stats(self) -> KeyCacheStats:
        """Hits and misses of the read key cache, and how many keys it holds."""
        return KeyCacheStats(self._keys.hits, self._keys.misses, len(self._keys))

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
        return _merged(self._pages(project_id, replay_id, start=start, stop=stop, only=only), only)

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
        return _as_array(self.merged(project_id, replay_id, start=start, stop=stop, only=only))

    def plan_page(
        self,
        project_id: int,
        replay_id: str,
        *,
        start: int = 0,
        stop: int | None = None,
        max_segments: int | None = None,
        max_bytes: int | None = None,
        only: frozenset[str] | None = None,
    ) -> Page:
        """The page of up to `max_segments` whole segments (default: the policy's page) from
        `start` (below `stop`), within `max_bytes` of wanted parts, with one range query.

        Raises ReplayShredded or ReplayNotFound. Every segment counts towards `max_segments`,
        even one holding none of the `only` parts (it reads as []); only the wanted parts'
        bytes count towards `max_bytes`, as only they are fetched. A first segment larger than
        `max_bytes` still makes a page of its own, so paging always moves on.
        """
        segments = max_segments or self._policy.page_segments
        return self._plan(
            project_id, replay_id, start, stop, segments, max_bytes, only, _row_limit(segments)
        )

    def _plan(
        self,
        project_id: int,
        replay_id: str,
        start: int,
        stop: int | None,
        segments: int,
        max_bytes: int | None,
        only: frozenset[str] | None,
        limit: int,
    ) -> Page:
        state, rows = self._catalog.replay_page(
            project_id, replay_id, min_segment=start, stop_segment=stop, limit=limit
        )
        if state is ReplayState.SHREDDED:
            raise ReplayShredded(f"replay {replay_id} of project {project_id} was deleted")
        if state is ReplayState.UNKNOWN:
            raise ReplayNotFound(f"replay {replay_id} of project {project_id} not found")
        return _cut(project_id, replay_id, rows, segments, max_bytes, only, stop, limit=limit)

    def plan_page_at(
        self,
        project_id: int,
        replay_id: str,
        *,
        offset: int,
        segments: int,
        only: frozenset[str] | None = None,
    ) -> tuple[Page, bool]:
        """The page of stored segments number `offset` to `offset + segments - 1` (counted in
        segment order, whatever the ids), and whether more follow; one range query.

        Raises ReplayShredded or ReplayNotFound. The page always holds exactly `segments`
        segments unless the replay ends first: no byte cap cuts it, so offsets a client
        computes up front stay right (read_page streams it in chunks of the policy's page, so
        memory stays bounded all the same).
        """
        # One segment more than asked tells whether another page follows (its rows are cheap
        # metadata; they are dropped here and never fetched).
        state, rows = self._catalog.replay_page_at(
            project_id, replay_id, offset=offset, segments=segments + 1
        )
        if state is ReplayState.SHREDDED:
            raise ReplayShredded(f"replay {replay_id} of project {project_id} was deleted")
        if state is ReplayState.UNKNOWN:
            raise ReplayNotFound(f"replay {replay_id} of project {project_id} not found")
        ids = list(dict.fromkeys(row.segment_id for row in rows))
        more = len(ids) > segments
        kept = set(ids[:segments])
        page_rows = tuple(row for row in rows if row.segment_id in kept)
        page = Page(project_id, replay_id, page_rows, tuple(ids[:segments]), only, None)
        return page, more

    def read_page(self, page: Page) -> Iterator[bytes]:
        """A planned page as one JSON array, one element per segment, in chunks of the policy's
        page size (decoded ahead while earlier chunks are sent); no further range query."""
        return _as_array(_merged(self._loaded(_split(page, self._policy.page_segments)), page.only))

    def read_segment(
        self,
        project_id: int,
        replay_id: str,
        segment_id: int,
        *,
        only: frozenset[str] | None = None,
    ) -> bytes | None:
        """One segment's events of the `only` parts as a JSON array; None if the replay has no
        such segment (ReplayShredded / ReplayNotFound for the replay)."""
        page = self.plan_page(
            project_id,
            replay_id,
            start=segment_id,
            stop=segment_id + 1,
            max_segments=1,
            only=only,
        )
        for merged in _merged(self._loaded(iter([page])), only):
            for _segment_id, body in merged:
                return body
        return None

    def read_video(self, project_id: int, replay_id: str, segment_id: int) -> bytes | None:
        """One segment's mobile video, exactly as sent; None if the replay exists but that
        segment has no video (ReplayShredded / ReplayNotFound for the replay).

        Only the video row's range is fetched, never the segment's JSON parts.
        """
        page = self.plan_page(
            project_id,
            replay_id,
            start=segment_id,
            stop=segment_id + 1,
            max_segments=1,
            only=frozenset({VIDEO}),
        )
        rows = [row for row in page.rows if row.part == VIDEO]
        for stored in self._open_page(rows) if rows else ():
            return stored.body
        return None

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
        yield from self._loaded(self._planned(project_id, replay_id, start, stop, only))

    def _planned(
        self,
        project_id: int,
        replay_id: str,
        start: int,
        stop: int | None,
        only: frozenset[str] | None,
    ) -> Iterator[Page]:
        """The pages from `start`: the first checks the replay's state, the rest follow cursors."""
        # Ask for about the rows a page needs, not for eight parts per segment: the rows a page
        # does not keep are read again by the next query, and decoding them was most of a
        # read's catalog time. The first page guesses two parts per segment, the next ones go
        # by the parts the last page had. A guess too small only makes a page shorter (its
        # last, cut segment starts the next one), and a limit always holds one whole segment
        # of every part (_row_limit(1)).
        segments = self._policy.page_segments
        limit = _bounded_limit(2 * segments + 2, segments)
        page = self._plan(project_id, replay_id, start, stop, segments, None, only, limit)
        yield page
        while page.next_cursor is not None:
            counts = _rows_per_segment(page.rows)
            mean = len(page.rows) / max(len(counts), 1)
            wanted = int(segments * mean * 1.1) + max(counts, default=1) + 1
            limit = _bounded_limit(wanted, segments)
            rows = self._catalog.replay_ranges(
                project_id,
                replay_id,
                min_segment=page.next_cursor,
                stop_segment=stop,
                limit=limit,
            )
            page = _cut(project_id, replay_id, rows, segments, None, only, stop, limit=limit)
            yield page

    def _loaded(self, pages: Iterator[Page]) -> Iterator[tuple[list[int], list[StoredSegment]]]:
        """Each page with rows, opened; the next is planned and loading while one is handed out."""

        def submit_next() -> Future[tuple[list[int], list[StoredSegment]]] | None:
            for page in pages:
                if page.rows:
                    return self._pages_ahead.submit(self._load, page)
            return None

        loading = submit_next()
        while loading is not None:
            opened = loading.result()
            # Start the next page before handing this one out: its blobs are fetched and
            # decoded while the caller streams this one (at most two pages in memory).
            loading = submit_next()
            yield opened

    def _load(self, page: Page) -> tuple[list[int], list[StoredSegment]]:
        only = page.only
        wanted = [r for r in page.rows if only is None or r.part in only or r.part == RECORDING]
        return list(page.segment_ids), list(self._open_page(wanted)) if wanted else []

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
        frames: list[memoryview] = [memoryview(b"")] * len(rows)
        for fetch, data in zip(fetches, self._pool.map(self._fetch, fetches), strict=True):
            # Views into the fetched bytes: a frame is never copied out of its GET.
            view = memoryview(data)
            for index in fetch.members:
                row = rows[index]
                frames[index] = view[row.start - fetch.start : row.stop - fetch.start]
        bodies = self._pool.map(
            lambda index: self._open(rows[index], frames[index]), range(len(rows))
        )
        for row, body in zip(rows, bodies, strict=True):
            yield StoredSegment(row.segment_id, row.part, body)

    def _fetch(self, fetch: Fetch) -> bytes:
        data = self._blob_store.get_range(fetch.blob_path, fetch.start, fetch.stop)
        self.counters.add(gets=1, bytes_fetched=len(data), frames=len(fetch.members))
        return data

    def _open(self, row: RangeRecord, frame: bytes | memoryview) -> bytes:
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


def _row_limit(segments: int) -> int:
    """Rows to ask for a page of `segments`: up to eight parts each (four typed ones and the
    whole recording, with room to spare), and one more to tell whether the query cut it short."""
    return segments * 8 + 1


def _rows_per_segment(rows: Sequence[RangeRecord]) -> list[int]:
    counts: dict[int, int] = {}
    for row in rows:
        counts[row.segment_id] = counts.get(row.segment_id, 0) + 1
    return list(counts.values())


def _bounded_limit(wanted: int, segments: int) -> int:
    """A row limit that holds at least one whole segment and at most a full default page."""
    return min(max(wanted, _row_limit(1)), _row_limit(segments))


def _cut(
    project_id: int,
    replay_id: str,
    rows: list[RangeRecord],
    max_segments: int,
    max_bytes: int | None,
    only: frozenset[str] | None,
    stop: int | None,
    *,
    limit: int | None = None,
) -> Page:
    """The page the rows of one range query make: whole segments only, at most `max_segments`
    of them within `max_bytes` of wanted parts, and where the next page starts (`limit`: the
    query's row limit, by default `_row_limit(max_segments)`)."""
    kept: list[RangeRecord] = []
    segments: list[int] = []
    size = 0
    next_cursor: int | None = None
    for row in rows:
        new_segment = not segments or segments[-1] != row.segment_id
        if (
            new_segment
            and segments
            and (
                len(segments) == max_segments
                or (max_bytes is not None and size + row.size > max_bytes)
            )
        ):
            next_cursor = row.segment_id
            break
        if new_segment:
            segments.append(row.segment_id)
        kept.append(row)
        if only is None or row.part in only or row.part == RECORDING:
            size += row.size
    else:
        if len(rows) == (limit or _row_limit(max_segments)) and kept:
            # The query limit cut the page short: continue after the last whole segment.
            last = kept[-1].segment_id
            kept = [row for row in kept if row.segment_id != last] or kept
            segments = list(dict.fromkeys(row.segment_id for row in kept))
            next_cursor = kept[-1].segment_id + 1
    if next_cursor is not None and stop is not None and next_cursor >= stop:
        next_cursor = None
    return Page(project_id, replay_id, tuple(kept), tuple(segments), only, next_cursor)


def _split(page: Page, segments: int) -> Iterator[Page]:
    """A planned page in pieces of up to `segments` segments (to decode and send in turn)."""
    for first in range(0, len(page.segment_ids), segments):
        ids = page.segment_ids[first : first + segments]
        wanted = set(ids)
        rows = tuple(row for row in page.rows if row.segment_id in wanted)
        yield Page(page.project_id, page.replay_id, rows, ids, page.only, None)


def _merged(
    pages: Iterator[tuple[list[int], list[StoredSegment]]], only: frozenset[str] | None
) -> Iterator[list[tuple[int, bytes]]]:
    """Opened pages as (segment id, its events of the `only` parts), every segment present."""
    for segment_ids, opened in pages:
        by_segment: dict[int, list[tuple[str, bytes]]] = {}
        for stored in opened:
            by_segment.setdefault(stored.segment_id, []).append((stored.part, stored.body))
        yield [(sid, merge(by_segment.get(sid, []), only)) for sid in segment_ids]


def _as_array(pages: Iterator[list[tuple[int, bytes]]]) -> Iterator[bytes]:
    """Merged pages as chunks of one JSON array: "[" only once the first page is decoded, so a
    missing replay fails instead of half-answering."""
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
