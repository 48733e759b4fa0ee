"""GcsBlobStore: packed blobs as Google Cloud Storage objects under ``gs://bucket/prefix``.

Create-only writes are uploads with ``if_generation_match=0``; conditional rewrites use the
generation read with the blob. Every object carries its expiry in metadata and its creation
time as GCS *custom time*, which bucket lifecycle rules count days from (`gcs_lifecycle`), so a
forced overwrite that keeps the custom time never extends retention.

Retries are google-cloud-storage's own (429, 5xx, connection errors and timeouts), bounded by a
deadline; whatever is still failing after it becomes BackendUnavailable. Vendor errors are mapped
into our tree in `_map` and nowhere else.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import google_crc32c
import requests
from google.api_core import exceptions as api
from google.api_core.retry import Retry
from google.auth import exceptions as auth_errors
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY

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

_BACKEND = "gcs"
EXPIRES_AT_KEY = "vault-store-expires-at"
# GCS sends a blob of up to this size in one multipart request (one write operation); larger
# blobs go as a resumable upload in chunks of this size (a multiple of 256 KiB, as GCS requires).
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024


class GcsBlobStore:
    """A BlobStore over one GCS bucket and an optional prefix inside it."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: storage.Client | None = None,
        retry_deadline: float = 30.0,
        request_timeout: float = 60.0,
        pool_size: int = 32,
    ) -> None:
        if not bucket:
            raise ConfigError("GCS blob store: a bucket name is required (gs://bucket/prefix)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self._client = client if client is not None else _client(pool_size)
        self._bucket = self._client.bucket(bucket)
        self._prefix = prefix
        self._retry: Retry = DEFAULT_RETRY.with_timeout(retry_deadline).with_delay(
            initial=0.1, maximum=4.0, multiplier=2.0
        )
        self._timeout = request_timeout

    @property
    def bucket(self) -> storage.Bucket:
        """The bucket (for lifecycle rules)."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The object-name prefix under which blob paths live ('' or ending in '/')."""
        return self._prefix

    def soft_delete_seconds(self) -> int:
        """The bucket's soft-delete retention (0: none), read from the bucket's metadata."""
        try:
            self._bucket.reload(retry=self._retry, timeout=self._timeout)
        except Exception as exc:  # noqa: BLE001 (mapped to our errors, as every call here)
            raise _map(exc, "soft_delete_policy", "") from None
        policy = self._bucket.soft_delete_policy
        return int(policy.retention_duration_seconds or 0) if policy is not None else 0

    def put(
        self,
        path: str,
        data: Buffers,
        *,
        expires_at: datetime | None = None,
        custom_time: datetime | None = None,
    ) -> None:
        """Create-only upload; a retried upload that finds its own bytes there has succeeded."""
        blob = self._blob(path)
        _describe(blob, created_at=custom_time or datetime.now(UTC), expires_at=expires_at)
        stream = ChunkStream(data)
        try:
            self._upload(blob, stream, if_generation_match=0)
        except api.PreconditionFailed:
            # A retry after a lost response meets the object its first attempt created.
            if self._holds(path, stream):
                return
            raise AlreadyExists(f"{path} already exists", backend=_BACKEND, op="put") from None
        except Exception as exc:  # noqa: BLE001 - every vendor error is mapped in one place
            raise _map(exc, "put", path) from None

    def get_range(self, path: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop): GCS ranges end inclusively, so ask for stop - 1."""
        if not 0 <= start <= stop:
            raise InvalidInput("range", f"invalid byte range [{start}, {stop})")
        if start == stop:
            return b""
        blob = self._blob(path)
        try:
            data: bytes = blob.download_as_bytes(
                start=start, end=stop - 1, retry=self._retry, timeout=self._timeout
            )
        except api.RequestRangeNotSatisfiable:
            raise CorruptData(
                f"blob {path} is shorter than a range the catalog points at"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise _map(exc, "get_range", path) from None
        if len(data) != stop - start:
            raise CorruptData(f"blob {path} is shorter than a range the catalog points at")
        return data

    def get(self, path: str) -> bytes:
        """The whole object."""
        return self.get_versioned(path)[0]

    def get_versioned(self, path: str) -> tuple[bytes, str]:
        """Read the current generation's metadata, then download exactly that generation."""
        name = self._name(path)
        try:
            current = self._bucket.get_blob(name, retry=self._retry, timeout=self._timeout)
            if current is None:
                raise BlobNotFound(f"{path} does not exist", backend=_BACKEND, op="get")
            generation = current.generation
            exact = self._bucket.blob(name, generation=generation)
            data: bytes = exact.download_as_bytes(retry=self._retry, timeout=self._timeout)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _map(exc, "get", path) from None
        return data, str(generation)

    def replace(
        self, path: str, data: Buffers, *, if_generation: str, expires_at: datetime | None
    ) -> str:
        """Upload over `path` only if it is still at `if_generation`, keeping its custom time."""
        blob = self._blob(path)
        try:
            current = self._bucket.get_blob(blob.name, retry=self._retry, timeout=self._timeout)
            if current is None:
                raise BlobNotFound(f"{path} does not exist", backend=_BACKEND, op="replace")
            _describe(blob, created_at=current.custom_time, expires_at=expires_at)
            if expires_at is None:
                blob.metadata = current.metadata
            self._upload(blob, ChunkStream(data), if_generation_match=int(if_generation))
        except api.PreconditionFailed:
            raise GenerationMismatch(
                f"{path} changed since it was read", backend=_BACKEND, op="replace"
            ) from None
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _map(exc, "replace", path) from None
        return str(blob.generation)

    def delete(self, path: str, *, if_generation: str | None = None) -> None:
        """Delete the object, only at `if_generation` when given (GenerationMismatch otherwise)."""
        blob = self._blob(path)
        try:
            blob.delete(
                if_generation_match=None if if_generation is None else int(if_generation),
                retry=self._retry,
                timeout=self._timeout,
            )
        except api.PreconditionFailed:
            raise GenerationMismatch(
                f"{path} changed since it was listed", backend=_BACKEND, op="delete"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise _map(exc, "delete", path) from None

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Objects under the store's prefix and `prefix`, in name order (GCS lists sorted)."""
        try:
            for blob in self._client.list_blobs(
                self._bucket, prefix=self._prefix + prefix, retry=self._retry, timeout=self._timeout
            ):
                yield BlobInfo(
                    blob.name[len(self._prefix) :],
                    int(blob.size or 0),
                    blob.time_created or datetime.now(UTC),
                    str(blob.generation),
                )
        except Exception as exc:  # noqa: BLE001
            raise _map(exc, "list", prefix) from None

    def _upload(self, blob: storage.Blob, stream: ChunkStream, *, if_generation_match: int) -> None:
        if stream.size > UPLOAD_CHUNK_BYTES:
            blob.chunk_size = UPLOAD_CHUNK_BYTES
        blob.upload_from_file(
            stream,
            size=stream.size,
            content_type="application/octet-stream",
            if_generation_match=if_generation_match,
            retry=self._retry,
            timeout=self._timeout,
            checksum="crc32c",
        )

    def _holds(self, path: str, stream: ChunkStream) -> bool:
        """Whether the object at `path` has exactly the bytes of `stream` (size and CRC32C)."""
        existing = self._bucket.get_blob(self._name(path), retry=self._retry, timeout=self._timeout)
        return (
            existing is not None
            and existing.size == stream.size
            and existing.crc32c == stream.crc32c_base64()
        )

    def _blob(self, path: str) -> storage.Blob:
        return self._bucket.blob(self._name(path))

    def _name(self, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput("blob_path", f"not a relative blob path: {path!r}")
        return self._prefix + path


class ChunkStream(io.RawIOBase):
    """A seekable, read-only file over chunks, so an upload never needs them joined first."""

    def __init__(self, data: Buffers) -> None:
        super().__init__()
        self._chunks: Sequence[bytes] = [data] if isinstance(data, bytes) else data
        self._starts: list[int] = []
        offset = 0
        for chunk in self._chunks:
            self._starts.append(offset)
            offset += len(chunk)
        self.size = offset
        self._position = 0
        self._index = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = min(max(base + offset, 0), self.size)
        self._index = 0
        while (
            self._index + 1 < len(self._chunks) and self._starts[self._index + 1] <= self._position
        ):
            self._index += 1
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self.size:
            chunk = self._chunks[self._index]
            inside = self._position - self._starts[self._index]
            if inside >= len(chunk):
                self._index += 1
                continue
            take = min(len(chunk) - inside, len(view) - written)
            view[written : written + take] = chunk[inside : inside + take]
            written += take
            self._position += take
        return written

    def crc32c_base64(self) -> str:
        """The CRC32C of all chunks, base64 as GCS reports it."""
        crc = 0
        for chunk in self._chunks:
            crc = google_crc32c.extend(crc, chunk)
        return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def _describe(
    blob: storage.Blob, *, created_at: datetime | None, expires_at: datetime | None
) -> None:
    """Expiry in metadata, creation time as custom time (what lifecycle rules count from)."""
    if created_at is not None:
        blob.custom_time = created_at
    if expires_at is not None:
        blob.metadata = {EXPIRES_AT_KEY: expires_at.astimezone(UTC).isoformat()}


def _client(pool_size: int) -> storage.Client:
    """A client whose HTTP pool fits the reader's parallel ranged gets."""
    client = storage.Client()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    return client


_TRANSIENT = (
    api.TooManyRequests,
    api.ServerError,
    api.RetryError,
    requests.ConnectionError,
    requests.Timeout,
    auth_errors.TransportError,
    ConnectionError,
    TimeoutError,
)


def _map(exc: Exception, op: str, path: str) -> BackendError:
    """The one place GCS and transport errors become vault-store errors."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, api.NotFound):
        return BlobNotFound(f"{path} does not exist", backend=_BACKEND, op=op)
    if isinstance(exc, _TRANSIENT):
        return BackendUnavailable(f"{path}: {type(exc).__name__}", backend=_BACKEND, op=op)
    if isinstance(exc, api.Forbidden | api.Unauthorized | auth_errors.DefaultCredentialsError):
        return BackendError(
            f"{path}: permission denied ({type(exc).__name__}); check the credentials and the "
            "bucket's IAM roles",
            backend=_BACKEND,
            op=op,
        )
    return BackendError(f"{path}: {type(exc).__name__}", backend=_BACKEND, op=op)
