"""vault-store: session replays packed into shared blobs, sealed per replay, shreddable."""

from __future__ import annotations

from vault_store.blobstore import BlobStore, LocalBlobStore
from vault_store.catalog import Catalog, ReplayState
from vault_store.crypto import DataKey, FrameIdentity
from vault_store.errors import (
    AlreadyExists,
    BackendError,
    BackendUnavailable,
    BlobNotFound,
    ConfigError,
    CorruptData,
    GenerationMismatch,
    InvalidInput,
    ReplayNotFound,
    ReplayShredded,
    VaultError,
)
from vault_store.kms import KeyContext, Kms, LocalKms, WrappedKey
from vault_store.message import Segment, parse_message
from vault_store.settings import FlushPolicy, ReadPolicy, Settings
from vault_store.vault import FlushResult, Vault

__all__ = [
    "AlreadyExists",
    "BackendError",
    "BackendUnavailable",
    "BlobNotFound",
    "BlobStore",
    "Catalog",
    "ConfigError",
    "CorruptData",
    "DataKey",
    "FlushPolicy",
    "FlushResult",
    "FrameIdentity",
    "GenerationMismatch",
    "InvalidInput",
    "KeyContext",
    "Kms",
    "LocalBlobStore",
    "LocalKms",
    "ReadPolicy",
    "ReplayNotFound",
    "ReplayShredded",
    "ReplayState",
    "Segment",
    "Settings",
    "Vault",
    "VaultError",
    "WrappedKey",
    "parse_message",
]
