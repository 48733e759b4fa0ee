"""Read a replay: rows in segment order, coalesced ranged GETs in parallel, frames opened."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog, RangeRecord, ReplayState
from vault_store.core import codec
from vault_store.core.coalesce import Fetch, plan_fetches
from vault_store.core.crypto import DataKey, FrameIdentity, decrypt_frame, open_frame
from vault_store.core.keycache import KeyCache
from vault_store.core.parts import RECORDING, VIDEO, merge
from vault_store.errors import CorruptData, ReplayNotFound, ReplayShredded
from vault_store.kms import KeyContext, Kms
from vault_store.settings import ReadPolicy

_T = TypeVar("_T")
_R = TypeVar("_R")


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
        return _array(self._chunks(self._planned(project_id, replay_id, start, stop, only)))

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
        return _cut(
            project_id,
            replay_id,
            rows,
            segments,
            max_bytes,
            only,
            stop,
            truncated=len(rows) == limit,
        )

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
        return _array(self._chunks(_split(page, self._policy.page_segments)))

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
        rows = tuple(row for row in page.rows if row.part == VIDEO)
        if not rows:
            return None
        video = Page(project_id, replay_id, rows, page.segment_ids, page.only, None)
        _segment_ids, opened = self._decode(self._fetch_window([video])[0])
        return opened[0].body

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
        # Later queries ask for the rows of up to _PAGES_PER_QUERY pages (a row is cheap
        # metadata; each query costs its statement and its bucket lookup), cut here into pages.
        rows: list[RangeRecord] = []
        truncated = False
        while page.next_cursor is not None:
            rows = rows[len(page.rows) :]
            if not rows or (truncated and rows[0].segment_id == rows[-1].segment_id):
                # Nothing left, or only the last segment, which the query may have cut short.
                counts = _rows_per_segment(page.rows)
                mean = len(page.rows) / max(len(counts), 1)
                wanted = int(segments * _PAGES_PER_QUERY * mean * 1.1) + max(counts, default=1)
                limit = _bounded_limit(wanted + 1, segments * _PAGES_PER_QUERY)
                rows = self._catalog.replay_ranges(
                    project_id,
                    replay_id,
                    min_segment=page.next_cursor,
                    stop_segment=stop,
                    limit=limit,
                )
                truncated = len(rows) == limit
            page = _cut(
                project_id, replay_id, rows, segments, None, only, stop, truncated=truncated
            )
            yield page

    def _loaded(self, pages: Iterator[Page]) -> Iterator[tuple[list[int], list[StoredSegment]]]:
        """Each page with rows, opened, in order.

        Pages are fetched a window at a time: the first page alone (its bytes leave after one
        range query and one round of GETs), then consecutive pages up to the policy's
        `max_fetch_bytes` of wanted frames, so the ranges of many pages that lie side by side
        in one blob (a compacted replay) come in one GET instead of one per page. A page waits
        only for the GETs that hold its own frames; the next window is planned, and the next
        page decoded, while the caller streams this one (at most two windows of sealed bytes
        and two decoded pages in memory).
        """
        windows = _windows(pages, self._policy.max_fetch_bytes)
        for fetching in self._one_ahead(windows, self._fetch_window):
            yield from self._one_ahead(iter(fetching), self._decode)

    def _chunks(self, pages: Iterator[Page]) -> Iterator[bytes]:
        """Each page with rows as one chunk of the merged JSON array (its segments, a comma
        before each but the read's first), fetched and decoded ahead as `_loaded` does.

        A page thread authenticates a page's frames, hands their decompression to the pool and
        goes on to the next page while the caller waits for this page's chunk: the serial part
        of a page overlaps the previous page's zstd.
        """
        later = False

        def start(page: _FetchingPage) -> Callable[[], bytes]:
            # Pages are started one at a time and in order (`_one_ahead`), so `later` is only
            # ever read and set by one thread at a time.
            nonlocal later
            finish = self._page_chunk(page, comma=later)
            later = True
            return finish

        windows = _windows(pages, self._policy.max_fetch_bytes)
        for fetching in self._one_ahead(windows, self._fetch_window):
            for finish in self._one_ahead(iter(fetching), start):
                yield finish()

    def _page_chunk(self, page: _FetchingPage, *, comma: bool) -> Callable[[], bytes]:
        """One page's segments as a piece of the JSON array, a comma first if `comma`: a
        function that waits for the piece (its errors raise there).

        Every frame is first authenticated, in row order (so an integrity error names the
        earliest bad segment), in batches on the pool if some must be decompressed. A segment
        that is one frame read as stored (`_FetchingPage.direct`: most segments) only has its
        zstd frame's declared size read then; any other segment's frames are decompressed and
        merged as before. Then the chunk is allocated at its exact size and the direct frames
        decompressed straight into their places, in batches on the pool: no bytes object per
        such segment, and no join.
        """
        rows = page.rows
        keys = self._page_keys(rows)
        frames = self._frames(page)
        direct = page.direct
        if all(row.segment_id in direct for row in rows):
            # Nothing to decompress yet (AES-GCM is a few percent of a frame's work): done
            # here, without a hand-off per batch.
            opened = _open_or_size(rows, frames, keys, direct, 0, len(rows))
        else:
            bounds = _batches(rows, self._policy.concurrency)
            opened = [
                item
                for batch in self._pool.map(
                    lambda b: _open_or_size(rows, frames, keys, direct, *b), bounds
                )
                for item in batch
            ]
        # One entry per segment, in order: (data, size, whether data is already the body).
        by_segment: dict[int, list[tuple[RangeRecord, bytes]]] = {}
        sized: dict[int, tuple[RangeRecord, tuple[bytes, int, bool]]] = {}
        for row, item in zip(rows, opened, strict=True):
            if row.segment_id in direct:
                sized[row.segment_id] = (row, item)
            else:
                by_segment.setdefault(row.segment_id, []).append((row, item[0]))
        entries: list[tuple[bytes, int, bool]] = []
        placed: list[tuple[int, RangeRecord]] = []  # (entry index, row) of the direct ones
        for segment_id in page.segment_ids:
            found = sized.get(segment_id)
            if found is not None:
                placed.append((len(entries), found[0]))
                entries.append(found[1])
            else:
                parts = [(row.part, body) for row, body in by_segment.get(segment_id, [])]
                body = merge(parts, page.only)
                entries.append((body, len(body), True))
        spans, position = [], int(comma)
        for _data, size, _is_body in entries:
            spans.append((position, position + size))
            position += size + 1
        # The chunk is written in place: a BytesIO over a fresh bytes object lends that object
        # as a writable buffer, and getvalue() hands the same object back once no view is left
        # (CPython; elsewhere getvalue copies, which is still correct).
        buffer = io.BytesIO(bytes(position - 1))
        view = buffer.getbuffer()
        for index, (first, _stop) in enumerate(spans):
            if index or comma:
                view[first - 1] = _COMMA
        for (data, _size, is_body), (first, stop) in zip(entries, spans, strict=True):
            if is_body and stop > first:
                view[first:stop] = data
        # zstd releases the GIL: batches of direct frames decompress in parallel.
        filling = [
            self._pool.submit(_fill, view, entries, spans, placed, *bounds)
            for bounds in _batches([row for _index, row in placed], self._policy.concurrency)
        ]

        def finish() -> bytes:
            with view:
                for done in filling:
                    done.result()  # in batch order: an error names the earliest bad segment
                # A body read as stored is a JSON array; any other (an older layout) is merged.
                stray = {
                    index
                    for index, _row in placed
                    if spans[index][1] == spans[index][0] or view[spans[index][0]] != _BRACKET
                }
                bodies = [bytes(view[first:stop]) for first, stop in spans] if stray else None
            if bodies is None:
                return buffer.getvalue()
            for index, row in placed:
                if index in stray:
                    bodies[index] = merge([(row.part, bodies[index])], page.only)
            return _joined(bodies, comma=comma)

        return finish

    def _frames(self, page: _FetchingPage) -> list[memoryview]:
        """Each row's frame, a view of its GET (never copied), once the GET is done."""
        # One view per GET, sliced per frame: a GET holds many frames.
        views: dict[Future[bytes], memoryview] = {}
        frames = []
        for row, (got, offset) in zip(page.rows, page.located, strict=True):
            view = views.get(got)
            if view is None:
                view = views[got] = memoryview(got.result())
            frames.append(view[offset : offset + row.stop - row.start])
        return frames

    def _one_ahead(self, items: Iterator[_T], work: Callable[[_T], _R]) -> Iterator[_R]:
        """`work(item)` for each item in order, the next one running on a page thread while
        the caller handles this one (page threads wait on the fetch pool, never on their own
        pool, so a busy pool cannot deadlock)."""

        def step() -> tuple[_R] | None:
            # Taking the next item runs here too, not on the caller's thread: for pages it is
            # the catalog's range queries, which the first page's decoding no longer waits for.
            # One step runs at a time (the next is submitted once this one is done), so the
            # iterator is never advanced from two threads at once.
            for item in items:
                return (work(item),)
            return None

        running = self._pages_ahead.submit(step)
        while (done := running.result()) is not None:
            running = self._pages_ahead.submit(step)
            yield done[0]

    def _fetch_window(self, window: list[Page]) -> list[_FetchingPage]:
        """Start the GETs of a window: the wanted rows of all its pages coalesced together,
        submitted in the order of their first row, so the first page's ranges go first."""
        wanted = [[row for row in page.rows if _wanted(row, page.only)] for page in window]
        rows = [row for page_rows in wanted for row in page_rows]
        fetches = plan_fetches(
            [(row.blob_path, row.start, row.stop) for row in rows],
            gap=self._policy.gap_bytes,
            max_span=self._policy.max_fetch_bytes,
        )
        by_row: dict[int, tuple[Future[bytes], int]] = {}
        for fetch in fetches:
            got = self._pool.submit(self._fetch, fetch)
            for index in fetch.members:
                by_row[index] = (got, rows[index].start - fetch.start)
        located = [by_row[index] for index in range(len(rows))]
        fetching, first = [], 0
        for page, page_rows in zip(window, wanted, strict=True):
            last = first + len(page_rows)
            fetching.append(
                _FetchingPage(
                    list(page.segment_ids),
                    page_rows,
                    located[first:last],
                    page.only,
                    _direct(page),
                )
            )
            first = last
        return fetching

    def _decode(self, page: _FetchingPage) -> tuple[list[int], list[StoredSegment]]:
        """Wait for the GETs holding the page's frames, then open them in a few batches in
        parallel; each frame is a view of its GET (never copied), and batches keep row order,
        so an integrity error names the earliest bad segment."""
        rows = page.rows
        if not rows:
            return page.segment_ids, []
        keys = self._page_keys(rows)
        frames = self._frames(page)
        # A task per batch, not per frame: a future per frame cost more thread hand-offs than
        # AES-GCM itself. A few batches still let zstd (which releases the GIL) use every core.
        bounds = _batches(rows, self._policy.concurrency)
        opened = self._pool.map(lambda b: _open_batch(rows, frames, keys, *b), bounds)
        return page.segment_ids, [stored for batch in opened for stored in batch]

    def _page_keys(self, rows: Sequence[RangeRecord]) -> dict[tuple[int, str, bytes], DataKey]:
        """Each distinct wrapped key of the page, unwrapped (cache or KMS) once, and checked
        once against each distinct key check its rows carry, before any decryption."""
        keys: dict[tuple[int, str, bytes], DataKey] = {}
        checked: set[tuple[int, str, bytes, bytes]] = set()
        for row in rows:
            lookup = (row.project_id, row.replay_id, row.wrapped_dek)
            if (*lookup, row.key_check) in checked:
                continue
            key = keys.get(lookup)
            if key is None:
                key = keys[lookup] = self._data_key(row)
            # AES-GCM does not commit to its key: check the row's commitment before decrypting.
            elif not key.matches(row.key_check):
                raise CorruptData(f"segment {row.segment_id} failed its key check")
            checked.add((*lookup, row.key_check))
        return keys

    def _fetch(self, fetch: Fetch) -> bytes:
        data = self._blob_store.get_range(fetch.blob_path, fetch.start, fetch.stop)
        self.counters.add(gets=1, bytes_fetched=len(data), frames=len(fetch.members))
        return data

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


# Frames of at least this many stored bytes make a batch worth its own task.
_BATCH_BYTES = 256 * 1024


def _batches(rows: Sequence[RangeRecord], most: int) -> list[tuple[int, int]]:
    """Consecutive (first, stop) row spans: at most `most`, each of about the same stored bytes
    and at least _BATCH_BYTES unless there is only one."""
    total = sum(row.size for row in rows)
    count = max(1, min(most, total // _BATCH_BYTES, len(rows)))
    share = total / count
    bounds: list[tuple[int, int]] = []
    first, size = 0, 0
    for index, row in enumerate(rows):
        size += row.size
        if size >= share * (len(bounds) + 1) and len(bounds) < count - 1:
            bounds.append((first, index + 1))
            first = index + 1
    bounds.append((first, len(rows)))
    return [(a, b) for a, b in bounds if a < b]


def _open_batch(
    rows: Sequence[RangeRecord],
    frames: Sequence[memoryview],
    keys: dict[tuple[int, str, bytes], DataKey],
    first: int,
    stop: int,
) -> list[StoredSegment]:
    """Open rows[first:stop] in order under the page's checked keys (as _open_or_size does
    with no segment read in place)."""
    opened = _open_or_size(rows, frames, keys, frozenset(), first, stop)
    return [
        StoredSegment(row.segment_id, row.part, body)
        for row, (body, _size, _is_body) in zip(rows[first:stop], opened, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _FetchingPage:
    """A page's wanted rows, each with the GET that holds its frame and its offset there."""

    segment_ids: list[int]
    rows: list[RangeRecord]
    located: list[tuple[Future[bytes], int]]
    only: frozenset[str] | None = None
    # Segments that are one row, read as stored: decompressed straight into the page's chunk
    # (see `_direct`).
    direct: frozenset[int] = frozenset()


def _direct(page: Page) -> frozenset[int]:
    """The page's segments that are exactly one row (no other part, not even video), of a
    part the read wants whole: `merge` of that one part returns its body as stored when it is
    a JSON array, so the frame can be decompressed where the segment goes."""
    rows: dict[int, list[RangeRecord]] = {}
    for row in page.rows:
        rows.setdefault(row.segment_id, []).append(row)
    return frozenset(
        segment_id
        for segment_id, (row, *others) in rows.items()
        if not others and row.part != VIDEO and (page.only is None or row.part in page.only)
    )


_COMMA = ord(",")
_BRACKET = ord("[")


def _open_or_size(
    rows: Sequence[RangeRecord],
    frames: Sequence[memoryview],
    keys: dict[tuple[int, str, bytes], DataKey],
    direct: frozenset[int],
    first: int,
    stop: int,
) -> list[tuple[bytes, int, bool]]:
    """rows[first:stop] authenticated and decrypted, in order, each as (data, size, is_body):
    a direct segment's zstd frame and its declared size (False), any other row's body (True)."""
    opened = []
    for index in range(first, stop):
        row = rows[index]
        key = keys[(row.project_id, row.replay_id, row.wrapped_dek)]
        identity = FrameIdentity(row.project_id, row.replay_id, row.segment_id, row.part)
        if row.segment_id not in direct:
            body = open_frame(frames[index], key, identity)
            opened.append((body, len(body), True))
            continue
        compressed = decrypt_frame(frames[index], key, identity)
        # Only authenticated bytes reach zstd, and no chunk is sized beyond the cap.
        size = codec.content_size(compressed, max_size=codec.MAX_SEGMENT_BYTES)
        if size >= 0:
            opened.append((compressed, size, False))
        else:
            body = codec.decompress(compressed, max_size=codec.MAX_SEGMENT_BYTES)
            opened.append((body, len(body), True))
    return opened


def _fill(
    view: memoryview,
    entries: Sequence[tuple[bytes, int, bool]],
    spans: Sequence[tuple[int, int]],
    placed: Sequence[tuple[int, RangeRecord]],
    first: int,
    stop: int,
) -> None:
    """Decompress the direct segments placed[first:stop] into their spans of `view` (those
    decompressed already were copied in by the caller)."""
    for index, _row in placed[first:stop]:
        data, _size, is_body = entries[index]
        if not is_body:
            start, end = spans[index]
            codec.decompress_into(data, view[start:end])


def _wanted(row: RangeRecord, only: frozenset[str] | None) -> bool:
    """Whether a read of the `only` parts fetches this row (rows stored whole always are)."""
    return only is None or row.part in only or row.part == RECORDING


def _windows(pages: Iterator[Page], max_bytes: int) -> Iterator[list[Page]]:
    """The first page with rows alone, then consecutive pages grouped while their wanted frames
    fit in `max_bytes` (a page larger than that is a window of its own), so their ranges are
    coalesced together."""
    window: list[Page] = []
    size = 0
    first = True
    for page in pages:
        if not page.rows:
            continue
        if first:
            yield [page]
            first = False
            continue
        page_size = sum(row.size for row in page.rows if _wanted(row, page.only))
        if window and size + page_size > max_bytes:
            yield window
            window, size = [], 0
        window.append(page)
        size += page_size
    if window:
        yield window


# Pages' worth of rows a later range query of a read asks for: each query costs about 1.5 ms
# of statement, bucket lookup and round trip whatever its rows, and a row under a kilobyte.
_PAGES_PER_QUERY = 16


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
    truncated: bool,
) -> Page:
    """The page the rows of a range query make (from its first row): whole segments only, at
    most `max_segments` of them within `max_bytes` of wanted parts, and where the next page
    starts (`truncated`: the query hit its row limit, so its last segment may be cut short)."""
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
        if _wanted(row, only):
            size += row.size
    else:
        if truncated and kept:
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


def _array(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Page chunks as one JSON array: "[" only once the first page is decoded, so a missing
    replay fails instead of half-answering."""
    first = next(chunks, None)
    yield b"["
    if first is not None:
        yield first
        yield from chunks
    yield b"]"


def _joined(bodies: Sequence[bytes], *, comma: bool) -> bytes:
    """Segment bodies as one piece of a JSON array, a comma before each but the first (and
    before the first too if `comma`)."""
    return (b"," if comma else b"") + b",".join(bodies)
