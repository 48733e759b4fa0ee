"""The BlobStore port and the naming of packed blobs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored object as listed: path relative to the store, size, creation time (UTC), and
    the generation it was listed at (for a delete that must not remove a newer write)."""

    path: str
    size: int
    created_at: datetime
    generation: str | None = None


# A blob to write: one bytes object, or chunks written back to back (no joined copy needed).
Buffers = bytes | Sequence[bytes]


class BlobStore(Protocol):
    """Create-only object storage with ranged reads."""

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        """Store `data` at `path`; AlreadyExists if an object is there. Never overwrites.

        `custom_time` is the moment retention counts from (GCS lifecycle rules count days since
        it); None is now. Compaction passes its sources' so a copy never outlives them.
        """
        ...

    def get_range(self, path: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a blob; BlobNotFound, or CorruptData on a short read."""
        ...

    def get(self, path: str) -> bytes:
        """The whole blob."""
        ...

    def get_versioned(self, path: str) -> tuple[bytes, str]:
        """The whole blob and its generation (an opaque token for `replace`)."""
        ...

    def replace(
        self, path: str, data: Buffers, *, if_generation: str, expires_at: datetime | None
    ) -> str:
        """Overwrite an existing blob only if it is still at `if_generation`; returns the new
        generation, or raises GenerationMismatch. The expiry passed in is kept on the object."""
        ...

    def delete(self, path: str, *, if_generation: str | None = None) -> None:
        """Remove a blob; BlobNotFound if it is not there, GenerationMismatch if `if_generation`
        is given and the blob has been rewritten since."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose path starts with `prefix`."""
        ...


def blob_path(
    retention_days: int,
    created_at: datetime,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> str:
    """``r{days}d/{YYYY-MM-DD}/{hour}/{random}.vsb``: one folder per retention class and day.

    The retention class first lets lifecycle rules and listings work per class; the random name
    means concurrent writers never collide (create-only would refuse it anyway).
    """
    return f"r{retention_days}d/{created_at:%Y-%m-%d}/{created_at:%H}/{random_bytes(16).hex()}.vsb"
