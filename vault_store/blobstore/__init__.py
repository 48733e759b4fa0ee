"""Blob storage: the BlobStore port, its backends, and the choice of backend by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from vault_store.blobstore.base import BlobInfo, BlobStore, Buffers, blob_path
from vault_store.blobstore.local import LocalBlobStore
from vault_store.errors import ConfigError
from vault_store.extras import import_extra

__all__ = [
    "BlobInfo",
    "BlobStore",
    "Buffers",
    "LocalBlobStore",
    "blob_path",
    "blob_store_from_url",
]


def blob_store_from_url(url: str) -> BlobStore:
    """Build the BlobStore a URL names: ``file:///abs/path`` or ``gs://bucket/prefix``."""
    parts = urlsplit(url)
    if parts.scheme == "gs":
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"blob URL {url!r}: expected gs://bucket or gs://bucket/prefix")
        # Imported here so the embedded default never loads the Google client libraries.
        gcs = import_extra("vault_store.blobstore.gcs", extra="gcp", feature=f"blob URL {url!r}")
        store: BlobStore = gcs.GcsBlobStore(parts.netloc, unquote(parts.path.strip("/")))
        return store
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"blob URL {url!r}: expected file:///absolute/path")
        return LocalBlobStore(Path(unquote(parts.path)))
    raise ConfigError(f"blob URL {url!r}: unknown scheme {parts.scheme!r} (supported: file, gs)")
