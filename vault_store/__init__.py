"""vault-store: session replays packed into shared blobs, sealed per replay, shreddable.

The public names are loaded on first use (PEP 562), so importing one pure module such as
`vault_store.core.crypto` does not load the catalog, SQLAlchemy or a database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault_store.blobstore import BlobStore, LocalBlobStore
    from vault_store.catalog import Catalog, ReplayState
    from vault_store.catalog.records import DeletionStatus, Scope, Status
    from vault_store.core.crypto import DataKey, FrameIdentity
    from vault_store.core.keys import KeyContext, WrappedKey
    from vault_store.core.message import Segment, parse_message
    from vault_store.core.policies import FlushPolicy, ReadPolicy
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
    from vault_store.kms import Kms, LocalKms
    from vault_store.services.ingest import FlushResult
    from vault_store.settings import Settings
    from vault_store.vault import Vault

# Public name -> the module that defines it.
_EXPORTS = {
    "AlreadyExists": "vault_store.errors",
    "BackendError": "vault_store.errors",
    "BackendUnavailable": "vault_store.errors",
    "BlobNotFound": "vault_store.errors",
    "BlobStore": "vault_store.blobstore",
    "Catalog": "vault_store.catalog",
    "ConfigError": "vault_store.errors",
    "CorruptData": "vault_store.errors",
    "DataKey": "vault_store.core.crypto",
    "DeletionStatus": "vault_store.catalog.records",
    "FlushPolicy": "vault_store.core.policies",
    "FlushResult": "vault_store.services.ingest",
    "FrameIdentity": "vault_store.core.crypto",
    "GenerationMismatch": "vault_store.errors",
    "InvalidInput": "vault_store.errors",
    "KeyContext": "vault_store.core.keys",
    "Kms": "vault_store.kms",
    "LocalBlobStore": "vault_store.blobstore",
    "LocalKms": "vault_store.kms",
    "ReadPolicy": "vault_store.core.policies",
    "ReplayNotFound": "vault_store.errors",
    "ReplayShredded": "vault_store.errors",
    "ReplayState": "vault_store.catalog",
    "Scope": "vault_store.catalog.records",
    "Segment": "vault_store.core.message",
    "Settings": "vault_store.settings",
    "Status": "vault_store.catalog.records",
    "Vault": "vault_store.vault",
    "VaultError": "vault_store.errors",
    "WrappedKey": "vault_store.core.keys",
    "parse_message": "vault_store.core.message",
}

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
    "DeletionStatus",
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
    "Scope",
    "Segment",
    "Settings",
    "Status",
    "Vault",
    "VaultError",
    "WrappedKey",
    "parse_message",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vault_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
