"""GCS lifecycle rules: delete packed blobs by days since their custom time, per retention class.

Each blob holds one retention class (its path starts ``r{days}d/``) and carries its creation
time as custom time, so one rule per class deletes whole blobs when their content has expired.
A margin (default one day) lets the catalog's expiry job remove the rows first, so a read never
meets a row whose blob is already gone. A forced overwrite keeps the custom time, so it never
extends retention.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vault_store.blobstore import BlobStore
from vault_store.catalog import Catalog
from vault_store.errors import ConfigError

DEFAULT_MARGIN_DAYS = 1
# Sentry's retention choices; classes found in the catalog are added to these.
DEFAULT_CLASSES = (30, 90)


def retention_classes(catalog: Catalog, extra: Iterable[int] = DEFAULT_CLASSES) -> list[int]:
    """Every retention class the catalog has blobs of, plus `extra`."""
    return sorted(catalog.blobs.retention_classes() | set(extra))


def rules(
    classes: Iterable[int], prefix: str, *, margin_days: int = DEFAULT_MARGIN_DAYS
) -> list[dict[str, Any]]:
    """The lifecycle rules (GCS JSON API shape) for `classes` under object-name `prefix`."""
    return [
        {
            "action": {"type": "Delete"},
            "condition": {
                "daysSinceCustomTime": days + margin_days,
                "matchesPrefix": [f"{prefix}r{days}d/"],
            },
        }
        for days in sorted(set(classes))
    ]


def merge(
    existing: Iterable[dict[str, Any]], ours: list[dict[str, Any]], prefix: str
) -> list[dict[str, Any]]:
    """The bucket's other rules, kept, with ours replacing any earlier vault-store rules."""

    def is_ours(rule: dict[str, Any]) -> bool:
        condition = rule.get("condition", {})
        return "daysSinceCustomTime" in condition and any(
            p.startswith(prefix) and p[len(prefix) :].startswith("r")
            for p in condition.get("matchesPrefix", [])
        )

    return [rule for rule in existing if not is_ours(rule)] + ours


@dataclass(frozen=True, slots=True)
class LifecyclePlan:
    """The lifecycle rules for a bucket's vault-store prefix, and whether they were applied."""

    bucket: str
    prefix: str
    applied: bool
    rules: list[dict[str, Any]]


def plan(
    catalog: Catalog,
    blob_store: BlobStore,
    *,
    extra_days: Iterable[int] = (),
    margin_days: int = DEFAULT_MARGIN_DAYS,
    apply: bool = False,
) -> LifecyclePlan:
    """The rules for every retention class (the catalog's, the defaults and `extra_days`);
    with `apply`, set on the bucket, keeping its other rules. ConfigError unless on GCS."""
    from vault_store.blobstore.gcs import GcsBlobStore

    if not isinstance(blob_store, GcsBlobStore):
        raise ConfigError("VAULT_STORE_BLOB_URL: gcs lifecycle needs a gs:// blob store")
    classes = retention_classes(catalog, (*DEFAULT_CLASSES, *extra_days))
    ours = rules(classes, blob_store.prefix, margin_days=margin_days)
    bucket = blob_store.bucket
    if apply:
        bucket.reload()
        bucket.lifecycle_rules = merge(bucket.lifecycle_rules, ours, blob_store.prefix)
        bucket.patch()
    return LifecyclePlan(bucket.name, blob_store.prefix, apply, ours)
