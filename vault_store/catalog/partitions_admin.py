"""Partition housekeeping: create ahead, drop fully expired ones, forget empty replays, sizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, delete, exists, func, select, text

from vault_store.catalog.blobs import record_event
from vault_store.catalog.models import RecordingByteRange, Replay
from vault_store.catalog.partitions import drop, ensure, exact_rows, has_unexpired_rows, partitions
from vault_store.catalog.records import CatalogSize, Partition

if TYPE_CHECKING:
    from vault_store.catalog.catalog import Catalog

# Partitions up to this size are counted exactly for the size report (a count(*) of 64 MiB takes
# milliseconds); bigger ones report the planner's estimate, kept current by autovacuum.
EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024


class PartitionRepository:
    """The range table's partitions (PostgreSQL) and the replay table they carry."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def create(self, buckets: Iterable[date], *, dry_run: bool = False) -> list[str]:
        """Create the partitions holding `buckets` that none holds yet, in one transaction;
        their names (dry: ``(bucket DAY)`` for each that would be created)."""
        created: list[str] = []
        with self._catalog.transaction("maintain") as conn:
            known = partitions(conn)
            for bucket in buckets:
                if any(p.covers(bucket) for p in known):
                    continue
                if dry_run:
                    name = f"(bucket {bucket})"
                    known.append(Partition(name, bucket, bucket + timedelta(1), 0, 0))
                    created.append(name)
                    continue
                new = ensure(conn, bucket, self._catalog.partition_width, known)
                if new is not None:
                    known.append(new)
                    created.append(new.name)
        return created

    def past(self, today: date) -> list[Partition]:
        """Partitions whose buckets are all before `today` (candidates for dropping)."""
        with self._catalog.connection("maintain") as conn:
            return [p for p in partitions(conn) if p.end <= today]

    def drop_expired(self, partition: Partition, now: datetime, *, dry_run: bool) -> int | None:
        """Drop a partition whose every row has expired by `now`, with the replays whose rows
        were all in it, in one transaction; the rows it held, or None if some row is still live
        (kept). Dry: only counts."""
        with self._catalog.transaction("maintain") as conn:
            if has_unexpired_rows(conn, partition, now):
                return None  # a late delivery expires later: wait for it
            rows = exact_rows(conn, partition)
            if not dry_run:
                drop(conn, partition)
                conn.execute(
                    delete(Replay).where(
                        Replay.expiry_bucket >= partition.first,
                        Replay.expiry_bucket < partition.end,
                    )
                )
        return rows

    def forget_replays(self, today: date, *, dry_run: bool) -> int:
        """Replays of past buckets with no row left (expired row by row) leave the replay
        table; how many (dry: would)."""
        rbr = RecordingByteRange
        orphaned = and_(
            Replay.expiry_bucket < today,
            ~exists().where(
                rbr.project_id == Replay.project_id,
                rbr.replay_id == Replay.replay_id,
                rbr.expiry_bucket == Replay.expiry_bucket,
            ),
        )
        with self._catalog.transaction("maintain") as conn:
            if dry_run:
                return int(
                    conn.execute(
                        select(func.count()).select_from(Replay).where(orphaned)
                    ).scalar_one()
                )
            return int(conn.execute(delete(Replay).where(orphaned)).rowcount)

    def size(self) -> CatalogSize:
        """The partitions and the range table's bytes (on SQLite the whole file's)."""
        with self._catalog.connection("maintain") as conn:
            if self._catalog.dialect == "postgresql":
                found = [_counted(conn, p) for p in partitions(conn)]
                return CatalogSize(found, sum(p.total_bytes for p in found))
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            page_size = conn.execute(text("PRAGMA page_size")).scalar_one()
            return CatalogSize([], int(pages) * int(page_size))

    def unvacuumed(self) -> list[str]:
        """What keeps autovacuum from the catalog's tables (PostgreSQL): the server's setting,
        and each table or partition that turns it off for itself; empty when nothing does."""
        with self._catalog.connection("maintain") as conn:
            server = conn.execute(text("SELECT current_setting('autovacuum')")).scalar_one()
            # Tables of the catalog's schema (search_path) whose own storage options turn it
            # off, however the option was spelled (off, 0, no, false...: the cast reads them
            # as PostgreSQL read them). The schema is matched by name, never cast from text,
            # which would fold a quoted name's case.
            found = conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "CROSS JOIN LATERAL pg_options_to_table(c.reloptions) AS o "
                    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
                    "AND o.option_name = 'autovacuum_enabled' "
                    "AND NOT CAST(o.option_value AS boolean) ORDER BY c.relname"
                )
            ).scalars()
            tables = [f"table {name} (autovacuum_enabled = false)" for name in found]
        return (["the server (autovacuum = off)"] if server != "on" else []) + tables

    def record_maintenance(self, *, at: datetime, details: Mapping[str, Any]) -> None:
        """Audit one maintenance run."""
        record_event(self._catalog, "maintain", kind="catalog.maintain", at=at, details=details)


def _counted(conn: Connection, partition: Partition) -> Partition:
    """`partition` with its exact row count when it is small enough to count in milliseconds;
    the planner's estimate otherwise (which is -1, no estimate, before the first ANALYZE: a
    fresh partition holding every row would read "0 rows")."""
    if partition.total_bytes > EXACT_COUNT_MAX_BYTES:
        return partition
    rows = exact_rows(conn, partition)
    return dataclasses.replace(partition, rows_estimate=rows, rows_exact=True, analyzed=True)
