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

from sqlalchemy import and_, delete, exists, func, select, text

from vault_store.catalog import Catalog, audit
from vault_store.catalog.models import RecordingByteRange, Replay
from vault_store.catalog.partitions import Partition, ensure, exact_rows, has_unexpired_rows
from vault_store.catalog.partitions import drop as drop_partition
from vault_store.catalog.partitions import partitions as list_partitions

DEFAULT_AHEAD_DAYS = 7


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition as reported: name, range of buckets, estimated rows, bytes on disk."""

    name: str
    first: str
    end: str
    rows_estimate: int
    total_bytes: int


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
    partitioned = catalog.dialect == "postgresql"
    report = MaintenanceReport(dry_run=dry_run, partitioned=partitioned)
    if partitioned:
        _create_ahead(catalog, report, now.date(), retention_classes, ahead_days, dry_run)
        _drop_expired(catalog, report, now, dry_run)
        catalog.forget_partitions()
    report.replays_forgotten = _forget_replays(catalog, now.date(), dry_run)
    _measure(catalog, report)
    if not dry_run:
        with catalog.transaction("maintain") as conn:
            audit.append(
                conn,
                kind="catalog.maintain",
                actor="vault-store",
                at=clock(),
                details={
                    "created": len(report.created),
                    "dropped": report.dropped,
                    "rows_dropped": report.rows_dropped,
                    "replays_forgotten": report.replays_forgotten,
                },
            )
    return report


def needed_buckets(today: date, retention_classes: Iterable[int], ahead_days: int) -> list[date]:
    """The buckets new replays will get over the next `ahead_days` days."""
    return sorted(
        {
            today + timedelta(days=days + offset)
            for days in retention_classes
            for offset in range(ahead_days + 1)
        }
    )


def _create_ahead(
    catalog: Catalog,
    report: MaintenanceReport,
    today: date,
    retention_classes: Iterable[int],
    ahead_days: int,
    dry_run: bool,
) -> None:
    with catalog.transaction("maintain") as conn:
        known = list_partitions(conn)
        for bucket in needed_buckets(today, retention_classes, ahead_days):
            if any(p.covers(bucket) for p in known):
                continue
            if dry_run:
                report.created.append(f"(bucket {bucket})")
                known.append(Partition(f"(bucket {bucket})", bucket, bucket + timedelta(1), 0, 0))
                continue
            created = ensure(conn, bucket, catalog.partition_width, known)
            if created is not None:
                known.append(created)
                report.created.append(created.name)


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
    with catalog.connection("maintain") as conn:
        candidates = [p for p in list_partitions(conn) if p.end <= now.date()]
    for partition in candidates:
        with catalog.transaction("maintain") as conn:
            if has_unexpired_rows(conn, partition, now):
                continue  # a late delivery expires later: wait for it
            rows = exact_rows(conn, partition)
            if not dry_run:
                drop_partition(conn, partition)
                # The replays whose rows were all in it are gone with it.
                conn.execute(
                    delete(Replay).where(
                        Replay.expiry_bucket >= partition.first,
                        Replay.expiry_bucket < partition.end,
                    )
                )
        report.dropped.append(partition.name)
        report.rows_dropped += rows


def _forget_replays(catalog: Catalog, today: date, dry_run: bool) -> int:
    """Replays of past buckets with no row left (expired row by row) leave the replay table."""
    rbr = RecordingByteRange
    orphaned = and_(
        Replay.expiry_bucket < today,
        ~exists().where(
            rbr.project_id == Replay.project_id,
            rbr.replay_id == Replay.replay_id,
            rbr.expiry_bucket == Replay.expiry_bucket,
        ),
    )
    with catalog.transaction("maintain") as conn:
        if dry_run:
            return int(
                conn.execute(select(func.count()).select_from(Replay).where(orphaned)).scalar_one()
            )
        return int(conn.execute(delete(Replay).where(orphaned)).rowcount)


def _measure(catalog: Catalog, report: MaintenanceReport) -> None:
    with catalog.connection("maintain") as conn:
        if catalog.dialect == "postgresql":
            found = list_partitions(conn)
            report.partitions = [
                PartitionInfo(
                    p.name, p.first.isoformat(), p.end.isoformat(), p.rows_estimate, p.total_bytes
                )
                for p in found
            ]
            report.table_bytes = sum(p.total_bytes for p in found)
        else:
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            size = conn.execute(text("PRAGMA page_size")).scalar_one()
            report.table_bytes = int(pages) * int(size)  # the whole SQLite file
