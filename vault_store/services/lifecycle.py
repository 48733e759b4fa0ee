"""GCS lifecycle rules: delete packed blobs by days since their custom time, per retention class.

Each blob holds one retention class (its path starts ``r{days}d/``) and carries its creation
time as custom time, so one rule per class deletes whole blobs when their content has expired.
A margin (default one day) lets the catalog's expiry job remove the rows first, so a read never
meets a row whose blob is already gone. A forced overwrite keeps the custom time, so it never
extends retention.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from vault_store.catalog import Catalog
from vault_store.catalog.models import Blob

DEFAULT_MARGIN_DAYS = 1
# Sentry's retention choices; classes found in the catalog are added to these.
DEFAULT_CLASSES = (30, 90)


def retention_classes(catalog: Catalog, extra: Iterable[int] = DEFAULT_CLASSES) -> list[int]:
    """Every retention class the catalog has blobs of, plus `extra`."""
    with catalog.connection("lifecycle") as conn:
        found = set(conn.execute(select(Blob.retention_days).distinct()).scalars())
    return sorted(found | set(extra))


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
