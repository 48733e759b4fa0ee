"""LocalBlobStore: blobs as files under one directory, written create-only and durably."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from vault_store.blobstore.base import BlobInfo, Buffers
from vault_store.errors import (
    AlreadyExists,
    BackendError,
    BackendUnavailable,
    BlobNotFound,
    ConfigError,
    CorruptData,
    GenerationMismatch,
    InvalidInput,
)

_BACKEND = "local-blob"
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
# Errors that a later attempt may not meet again (disk full, I/O hiccup, too many files open).
_TRANSIENT = {errno.ENOSPC, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EDQUOT}


class LocalBlobStore:
    """A BlobStore over a local directory (``file:///abs/path``)."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ConfigError(f"local blob store root must be an absolute path, got {root}")
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The directory holding the blobs."""
        return self._root

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        """Write to a temporary file, fsync, then link into place (atomic and create-only).

        `expires_at` and `custom_time` are not recorded: the catalog's expiry job deletes
        local blobs (no lifecycle rules count from a custom time here).
        """
        target = self._resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_for(target)
        try:
            _write_durably(temporary, data)
            # link() fails if the target exists, unlike rename(): that is what makes it create-only.
            os.link(temporary, target)
            _fsync_directory(target.parent)
        except FileExistsError:
            raise AlreadyExists(f"{path} already exists", backend=_BACKEND, op="put") from None
        except OSError as exc:
            raise _map(exc, "put", path) from None
        finally:
            temporary.unlink(missing_ok=True)

    def get_range(self, path: str, start: int, stop: int) -> bytes:
        """Read [start, stop) and check that exactly that many bytes came back."""
        if not 0 <= start <= stop:
            raise InvalidInput("range", f"invalid byte range [{start}, {stop})")
        try:
            with open(self._resolve(path), "rb") as handle:
                handle.seek(start)
                data = handle.read(stop - start)
        except OSError as exc:
            raise _map(exc, "get_range", path) from None
        if len(data) != stop - start:
            raise CorruptData(f"blob {path} is shorter than a range the catalog points at")
        return data

    def get_versioned(self, path: str) -> tuple[bytes, str]:
        """Read through one descriptor, so the data and the generation are of the same file."""
        try:
            with open(self._resolve(path), "rb") as handle:
                return handle.read(), _generation(os.fstat(handle.fileno()))
        except OSError as exc:
            raise _map(exc, "get", path) from None

    def replace(
        self, path: str, data: Buffers, *, if_generation: str, expires_at: datetime | None
    ) -> str:
        """Compare-and-swap under a store-wide lock: check the generation, then rename a new
        file into place (a new inode, so a new generation). Expiry lives in the path: kept."""
        target = self._resolve(path)
        temporary = _temporary_for(target)
        try:
            with self._replace_lock():
                if _generation(os.stat(target)) != if_generation:
                    raise GenerationMismatch(
                        f"{path} changed since it was read", backend=_BACKEND, op="replace"
                    )
                _write_durably(temporary, data)
                os.replace(temporary, target)
                _fsync_directory(target.parent)
                return _generation(os.stat(target))
        except OSError as exc:
            raise _map(exc, "replace", path) from None
        finally:
            temporary.unlink(missing_ok=True)

    def get(self, path: str) -> bytes:
        """The whole file."""
        try:
            return self._resolve(path).read_bytes()
        except OSError as exc:
            raise _map(exc, "get", path) from None

    def delete(self, path: str, *, if_generation: str | None = None) -> None:
        """Unlink the file (under the replace lock when a generation must still match)."""
        target = self._resolve(path)
        if if_generation is None:
            try:
                target.unlink()
            except OSError as exc:
                raise _map(exc, "delete", path) from None
            return
        try:
            with self._replace_lock():
                if _generation(os.stat(target)) != if_generation:
                    raise GenerationMismatch(
                        f"{path} changed since it was listed", backend=_BACKEND, op="delete"
                    )
                target.unlink()
        except OSError as exc:
            raise _map(exc, "delete", path) from None

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Files under the root whose relative path starts with `prefix`, sorted by path."""
        for file in sorted(self._root.rglob("*")):
            relative = file.relative_to(self._root).as_posix()
            if file.name.startswith(".") or not file.is_file() or not relative.startswith(prefix):
                continue
            status = file.stat()
            created_at = datetime.fromtimestamp(status.st_mtime, UTC)
            yield BlobInfo(relative, status.st_size, created_at, _generation(status))

    @contextlib.contextmanager
    def _replace_lock(self) -> Iterator[None]:
        """A store-wide lock across processes for compare-and-swap operations."""
        lock = os.open(self._root / ".replace.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # closing releases the lock

    def _resolve(self, path: str) -> Path:
        # Paths come from the catalog or our own naming; still refuse anything that escapes root.
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput("blob_path", f"not a relative blob path: {path!r}")
        return self._root.joinpath(*parts)


def _temporary_for(target: Path) -> Path:
    # Unique per call: threads and processes may write the same path at once.
    return target.with_name(f".{target.name}.{os.urandom(8).hex()}.tmp")


def _write_durably(path: Path, data: Buffers) -> None:
    """Create `path` (private), write every chunk, fsync: the bytes are on disk on return."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, [data] if isinstance(data, bytes) else data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, chunks: Sequence[bytes]) -> None:
    """writev() the chunks in IOV_MAX-sized groups, finishing any partial write by hand."""
    for first in range(0, len(chunks), _IOV_MAX):
        group = chunks[first : first + _IOV_MAX]
        written = os.writev(fd, group)
        expected = sum(len(chunk) for chunk in group)
        if written == expected:
            continue
        rest = memoryview(b"".join(group))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def _generation(status: os.stat_result) -> str:
    # Every replace renames a new inode into place: inode, change time and size identify it.
    return f"{status.st_ino}-{status.st_mtime_ns}-{status.st_size}"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _map(exc: OSError, op: str, path: str) -> BackendError:
    if isinstance(exc, FileNotFoundError):
        return BlobNotFound(f"{path} does not exist", backend=_BACKEND, op=op)
    if exc.errno in _TRANSIENT:
        return BackendUnavailable(f"{path}: {exc.strerror}", backend=_BACKEND, op=op)
    return BackendError(f"{path}: {exc.strerror}", backend=_BACKEND, op=op)
