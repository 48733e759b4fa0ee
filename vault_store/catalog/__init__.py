"""The catalog: where every sealed frame lives, its wrapped key, and what was deleted."""

from __future__ import annotations

from vault_store.catalog.catalog import Catalog
from vault_store.catalog.records import (
    BlobRecord,
    CatalogStats,
    InsertOutcome,
    RangeRecord,
    ReplayState,
)

__all__ = ["BlobRecord", "Catalog", "CatalogStats", "InsertOutcome", "RangeRecord", "ReplayState"]
