"""Buffers of sealed frames, one per retention class, and their packing into one blob (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from vault_store.core.crypto import FrameIdentity
from vault_store.core.keys import WrappedKey
from vault_store.core.policies import FlushPolicy


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A sealed frame waiting for its blob, with what its range row will carry."""

    identity: FrameIdentity
    header: bytes
    ciphertext: bytes
    wrapped: WrappedKey
    key_check: bytes
    retention_days: int
    plain_bytes: int
    # Keyed hashes of the user identifiers in the replay event (see subjects.py).
    subjects: frozenset[bytes] = frozenset()

    @property
    def size(self) -> int:
        """Bytes of the whole frame."""
        return len(self.header) + len(self.ciphertext)

    @property
    def frame(self) -> bytes:
        """The whole frame as one bytes object (a copy: for tests and tools, not the hot path)."""
        return self.header + self.ciphertext

    def __repr__(self) -> str:
        return f"SealedSegment({self.identity}, frame=<{self.size} bytes>)"


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """One blob as the chunks to write in order, and where each frame sits ([start, stop))."""

    chunks: tuple[bytes, ...]
    size: int
    segments: tuple[SealedSegment, ...]
    offsets: tuple[tuple[int, int], ...]

    @property
    def data(self) -> bytes:
        """The blob as one bytes object (a copy: for tests and tools)."""
        return b"".join(self.chunks)


def pack(segments: Sequence[SealedSegment]) -> PackedBlob:
    """Concatenate frames in (project, replay, part, segment) order; record each byte range.

    Arrival order is arbitrary (many replays interleave); sorting makes each replay's frames
    contiguous in the blob, so a read of one replay coalesces into one ranged GET per blob.
    """
    segments = sorted(segments, key=_frame_order)
    offsets = []
    chunks: list[bytes] = []
    position = 0
    for segment in segments:
        # Lengths read once per frame here, not through `size` (a flush packs thousands).
        header, ciphertext = segment.header, segment.ciphertext
        stop = position + len(header) + len(ciphertext)
        offsets.append((position, stop))
        chunks += (header, ciphertext)
        position = stop
    return PackedBlob(tuple(chunks), position, tuple(segments), tuple(offsets))


def _segment_of(identity: FrameIdentity) -> tuple[int, str, int]:
    return (identity.project_id, identity.replay_id, identity.segment_id)


def _frame_order(segment: SealedSegment) -> tuple[int, str, str, int]:
    # Part before segment: a view reading one part (console, say) finds it in one run.
    identity = segment.identity
    return (identity.project_id, identity.replay_id, identity.part, identity.segment_id)


@dataclass(slots=True)
class _Buffer:
    items: dict[FrameIdentity, SealedSegment] = field(default_factory=dict)
    # (project, replay, segment) of every buffered frame: one delivery of a segment per buffer.
    segments: set[tuple[int, str, int]] = field(default_factory=set)
    size: int = 0
    oldest: float = 0.0


class Packer:
    """One buffer per retention class so a blob's whole content expires together."""

    def __init__(self, policy: FlushPolicy) -> None:
        self._policy = policy
        self._buffers: dict[int, _Buffer] = {}

    def add(self, segment: SealedSegment, now: float) -> bool:
        """Buffer a frame; False if the same identity is already buffered (first one wins)."""
        buffer = self._buffers.get(segment.retention_days)
        if buffer is None:
            buffer = self._buffers[segment.retention_days] = _Buffer(oldest=now)
        if segment.identity in buffer.items:
            return False
        if not buffer.items:
            buffer.oldest = now
        buffer.items[segment.identity] = segment
        buffer.segments.add(_segment_of(segment.identity))
        buffer.size += segment.size
        return True

    def add_segment(self, frames: Sequence[SealedSegment], now: float) -> bool:
        """Buffer every frame of one segment, or none if that segment is already buffered
        (whatever its parts: the first delivery wins whole)."""
        if not frames:
            return False
        buffer = self._buffers.get(frames[0].retention_days)
        if buffer is not None and _segment_of(frames[0].identity) in buffer.segments:
            return False
        return any([self.add(frame, now) for frame in frames])

    def due(self, now: float) -> list[int]:
        """Retention classes whose buffer has reached a flush threshold."""
        return [days for days, buffer in self._buffers.items() if self._is_due(buffer, now)]

    def _is_due(self, buffer: _Buffer, now: float) -> bool:
        policy = self._policy
        if not buffer.items:
            return False
        if buffer.size >= policy.max_bytes:
            return True
        if policy.max_segments is not None and len(buffer.items) >= policy.max_segments:
            return True
        return policy.max_age_seconds is not None and now - buffer.oldest >= policy.max_age_seconds

    def pending(self) -> list[int]:
        """Retention classes with anything buffered."""
        return [days for days, buffer in self._buffers.items() if buffer.items]

    def take(self, retention_days: int) -> list[SealedSegment]:
        """Remove and return one class's buffered frames, in arrival order."""
        buffer = self._buffers.pop(retention_days, None)
        return list(buffer.items.values()) if buffer else []

    def restore(self, segments: Sequence[SealedSegment], now: float) -> None:
        """Put back frames whose flush failed, ahead of anything buffered since."""
        if not segments:
            return
        newer = self.take(segments[0].retention_days)
        for segment in (*segments, *newer):
            self.add(segment, now)

    def __iter__(self) -> Iterator[SealedSegment]:
        for buffer in self._buffers.values():
            yield from buffer.items.values()
