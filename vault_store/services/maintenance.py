"""Catalog maintenance: partitions created ahead, expired ones dropped whole, sizes reported.

On PostgreSQL every new replay's rows go to the partition of the day its first row expires
(retention days after it arrives), so the partitions needed soon are those `retention` days
ahead for each retention class: they are created `ahead_days` in advance, so no flush has to
create one. A partition is dropped once every row in it has expired: instantly, and with no dead
tuples left for vacuum, unlike deleting its rows one by one. Leftover expired rows (a late
delivery in a still-live partition; every row on SQLite) are deleted in chunks by retention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from vault_store.catalog import Catalog
from vault_store.errors import BackendError

DEFAULT_AHEAD_DAYS = 7


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition as reported: name, range of buckets, rows, bytes on disk.

    `rows_estimate` is exact when `rows_exact` (small partitions are counted), else PostgreSQL's
    estimate; `analyzed` False means there is no estimate yet (before the first ANALYZE).
    """

    name: str
    first: str
    end: str
    rows_estimate: int
    total_bytes: int
    rows_exact: bool
    analyzed: bool


@dataclass(slots=True)
class MaintenanceReport:
    """What a maintenance run did (or, dry, would do)."""

    dry_run: bool
    partitioned: bool
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_dropped: int = 0
    replays_forgotten: int = 0
    partitions: list[PartitionInfo] = field(default_factory=list)
    table_bytes: int = 0
    # What the operator should fix on the server (PostgreSQL); nothing here stops the run.
    warnings: list[str] = field(default_factory=list)


def maintain(
    catalog: Catalog,
    *,
    retention_classes: Iterable[int],
    ahead_days: int = DEFAULT_AHEAD_DAYS,
    dry_run: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> MaintenanceReport:
    """Create partitions ahead, drop fully expired ones, forget replays with no rows left."""
    now = clock()
    admin = catalog.partitions_admin
    partitioned = catalog.dialect == "postgresql"
    report = MaintenanceReport(dry_run=dry_run, partitioned=partitioned)
    if partitioned:
        buckets = needed_buckets(now.date(), retention_classes, ahead_days)
        report.created = admin.create(buckets, dry_run=dry_run)
        _drop_expired(catalog, report, now, dry_run)
        catalog.forget_partitions()
        report.warnings.extend(_vacuum_warnings(catalog))
    report.replays_forgotten = admin.forget_replays(now.date(), dry_run=dry_run)
    size = admin.size()
    report.partitions = [
        PartitionInfo(
            p.name,
            p.first.isoformat(),
            p.end.isoformat(),
            p.rows_estimate,
            p.total_bytes,
            p.rows_exact,
            p.analyzed,
        )
        for p in size.partitions
    ]
    report.table_bytes = size.table_bytes
    if not dry_run:
        admin.record_maintenance(
            at=clock(),
            details={
                "created": len(report.created),
                "dropped": report.dropped,
                "rows_dropped": report.rows_dropped,
                "replays_forgotten": report.replays_forgotten,
            },
        )
    return report


def _vacuum_warnings(catalog: Catalog) -> list[str]:
    """A warning for each place autovacuum is off: rows it never visits keep no hint bits and no
    visibility map, so the first statement to read each page (a lookup, a shred's counts)
    dirties it and, with small shared buffers, writes it out itself (docs/scaling.md)."""
    try:
        places = catalog.partitions_admin.unvacuumed()
    except BackendError as exc:
        # A check that cannot run is itself worth saying, and never stops maintenance.
        return [f"could not check where autovacuum is off: {exc}"]
    return [
        f"autovacuum is off for {place}: the catalog's rows are never vacuumed, and shreds and "
        "lookups then write out pages they only read (turn it on, or VACUUM the catalog's "
        "tables regularly; docs/scaling.md)"
        for place in places
    ]


def needed_buckets(today: date, retention_classes: Iterable[int], ahead_days: int) -> list[date]:
    """The buckets new replays will get over the next `ahead_days` days."""
    return sorted(
        {
            today + timedelta(days=days + offset)
            for days in retention_classes
            for offset in range(ahead_days + 1)
        }
    )


def drop_expired_partitions(catalog: Catalog, now: datetime) -> tuple[list[str], int]:
    """Drop every fully expired partition (PostgreSQL); the names and the rows they held."""
    if catalog.dialect != "postgresql":
        return [], 0
    report = MaintenanceReport(dry_run=False, partitioned=True)
    _drop_expired(catalog, report, now, dry_run=False)
    catalog.forget_partitions()
    return report.dropped, report.rows_dropped


def _drop_expired(
    catalog: Catalog, report: MaintenanceReport, now: datetime, dry_run: bool
) -> None:
    """Drop partitions whose buckets are all past and whose every row has expired."""
    admin = catalog.partitions_admin
    for partition in admin.past(now.date()):
        rows = admin.drop_expired(partition, now, dry_run=dry_run)
        if rows is None:
            continue  # a late delivery expires later: wait for it
        report.dropped.append(partition.name)
        report.rows_dropped += rows
