"""zstd compression of segments, with a hard cap on what decompression may produce."""

from __future__ import annotations

import threading

import zstandard

from vault_store.errors import CorruptData

# The producer's own limit on an uncompressed recording body; nothing we stored can be larger.
MAX_SEGMENT_BYTES = 100 * 1024 * 1024
DEFAULT_LEVEL = 3

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # Compressor contexts are costly to build and not thread-safe: one per thread and level.
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def compress(data: bytes, *, level: int = DEFAULT_LEVEL) -> bytes:
    """Compress one segment as a single zstd frame that records its content size."""
    result: bytes = _compressor(level).compress(data)
    return result


def decompress(data: bytes, *, max_size: int = MAX_SEGMENT_BYTES) -> bytes:
    """Decompress one zstd frame, refusing to produce more than `max_size` bytes."""
    try:
        declared = zstandard.frame_content_size(data)
        if declared > max_size:
            raise CorruptData("segment is larger than the decompression cap")
        if declared == -1:
            # Unknown size: zstandard stops with an error once max_output_size is exceeded.
            result: bytes = _decompressor().decompress(data, max_output_size=max_size)
        else:
            result = _decompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise CorruptData("segment does not decompress") from exc
    return result


def content_size(data: bytes, *, max_size: int = MAX_SEGMENT_BYTES) -> int:
    """The size one zstd frame declares it decompresses to (-1 if it does not say), refusing a
    declared size above `max_size`; CorruptData if `data` is no zstd frame."""
    try:
        declared: int = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CorruptData("segment does not decompress") from exc
    if declared > max_size:
        raise CorruptData("segment is larger than the decompression cap")
    return declared


def decompress_into(data: bytes, target: memoryview) -> None:
    """Decompress one zstd frame into `target`, which must be exactly the size the frame
    declares (`content_size`, so the cap is checked before `target` exists): no bytes object
    per frame, and no copy when a caller lays frames side by side.

    With the whole frame in hand and room for its declared size, zstd decodes it in one pass
    straight into `target`, and itself checks that the frame produces exactly that size.
    """
    try:
        if zstandard.frame_content_size(data) != len(target):
            raise CorruptData("segment does not decompress to its declared size")
        if not len(target):
            # Nothing to write: decode the frame anyway, so a bad one still fails.
            written = len(_decompressor().decompress(data))
        else:
            written = _decompressor().stream_reader(data).readinto(target)
    except zstandard.ZstdError as exc:
        raise CorruptData("segment does not decompress") from exc
    if written != len(target):
        raise CorruptData("segment does not decompress to its declared size")
