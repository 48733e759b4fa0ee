"""Partitions of recording_byte_range on PostgreSQL: list, create ahead, drop when expired.

A partition holds the rows whose `expiry_bucket` (the day their replay's first row expires)
falls in its range of days: one day, or one week with VAULT_STORE_CATALOG_PARTITION=week. A new
partition never overlaps an existing one (its range is clipped to the gap it fills), so changing
the width later is safe. SQLite has no partitions: these functions answer for one plain table.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Table,
    delete,
    literal_column,
    select,
    text,
)
from sqlalchemy.sql.util import ClauseAdapter

from vault_store.catalog.models import RecordingByteRange
from vault_store.catalog.records import ByteRange, Partition, as_utc

TABLE = "recording_byte_range"
PREFIX = f"{TABLE}_p"
_BOUNDS = re.compile(r"FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)")


def is_partition(name: str) -> bool:
    """Whether a table name is one of our partitions (kept out of schema comparisons)."""
    return name.startswith(PREFIX) and name[len(PREFIX) :].isdigit()


def bucket_of(expires_at: datetime) -> date:
    """The bucket of a replay whose first row expires at `expires_at` (its UTC day)."""
    return as_utc(expires_at).date()


def partitions(conn: Connection) -> list[Partition]:
    """The partitions of the range table, in bucket order (PostgreSQL only)."""
    found = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
            "c.reltuples::bigint, pg_total_relation_size(c.oid) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": TABLE},
    ).all()
    listed = []
    for name, bound, rows, size in found:
        match = _BOUNDS.search(bound or "")
        if match is None:
            continue  # not one of ours (a DEFAULT partition someone added)
        first, end = (date.fromisoformat(value) for value in match.groups())
        # reltuples is -1 until the first ANALYZE (or VACUUM): no estimate at all yet.
        analyzed = int(rows) >= 0
        listed.append(
            Partition(str(name), first, end, max(int(rows), 0), int(size), analyzed=analyzed)
        )
    return sorted(listed, key=lambda p: p.first)


def span(day: date, width: str) -> tuple[date, date]:
    """The range a new partition for `day` would take before clipping: its day or its week."""
    if width == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=7)
    return day, day + timedelta(days=1)


def ensure(conn: Connection, day: date, width: str, known: list[Partition]) -> Partition | None:
    """Create the partition that will hold bucket `day` unless one does; returns the new one."""
    if any(p.covers(day) for p in known):
        return None
    first, end = span(day, width)
    # Clip to the gap around `day`, so the new range never overlaps an existing one.
    first = max([first, *(p.end for p in known if p.end <= day)])
    end = min([end, *(p.first for p in known if p.first > day)])
    name = f"{PREFIX}{first:%Y%m%d}"
    # Names and dates are ours (digits and dashes), never input.
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{first.isoformat()}') TO ('{end.isoformat()}')"
        )
    )
    return Partition(name, first, end, 0, 0)


def has_unexpired_rows(conn: Connection, partition: Partition, now: datetime) -> bool:
    """Whether any row of the partition expires after `now` (a late delivery, say)."""
    return (
        conn.execute(
            text(f"SELECT 1 FROM {partition.name} WHERE expires_at > :now LIMIT 1"),  # noqa: S608
            {"now": now},
        ).first()
        is not None
    )


def exact_rows(conn: Connection, partition: Partition) -> int:
    return int(
        conn.execute(text(f"SELECT count(*) FROM {partition.name}")).scalar_one()  # noqa: S608
    )


def drop(conn: Connection, partition: Partition) -> None:
    """Detach and drop: the rows go at once, with no dead tuples left to vacuum."""
    conn.execute(text(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}"))
    conn.execute(text(f"DROP TABLE {partition.name}"))


def delete_rows(conn: Connection, where: ColumnElement[bool], limit: int) -> list[ByteRange]:
    """Delete up to `limit` range rows matching `where`; returns where their frames lay.

    By physical row id from an index-driven subquery: no list of keys travels back and forth,
    whatever the chunk size. On SQLite that is rowid, in one statement. On the partitioned
    PostgreSQL table it is ctid, one partition at a time: a ctid is unique only within its
    partition, and one statement over the parent would join every matching row of every
    partition against the chunk, a scan of the whole target per chunk.
    """
    rbr = RecordingByteRange
    if conn.dialect.name != "postgresql":
        row_id: ColumnElement[Any] = literal_column("rowid")
        victims = select(row_id).select_from(rbr).where(where).limit(limit)
        statement = (
            delete(rbr)
            .where(row_id.in_(victims.scalar_subquery()))
            .returning(rbr.blob_path, rbr.start, rbr.stop)
        )
        return [ByteRange(*row) for row in conn.execute(statement)]
    deleted: list[ByteRange] = []
    for partition in partitions(conn):
        table = _partition_table(partition.name)
        # The same condition, on the partition's columns (subqueries on other tables untouched).
        local = ClauseAdapter(
            table,
            include_fn=lambda column: getattr(column, "table", None) is rbr.__table__,
            adapt_on_names=True,
        ).traverse(where)
        ctid: ColumnElement[Any] = literal_column("ctid")
        victims = select(ctid).select_from(table).where(local).limit(limit - len(deleted))
        statement = (
            delete(table)
            .where(ctid.in_(victims.scalar_subquery()))
            .returning(table.c.blob_path, table.c.start, table.c.stop)
        )
        deleted += [ByteRange(*row) for row in conn.execute(statement)]
        if len(deleted) >= limit:
            break
    return deleted


@functools.lru_cache(maxsize=4096)
def _partition_table(name: str) -> Table:
    """A lightweight Table naming one partition, with the range table's columns."""
    columns = [Column(c.name, c.type) for c in RecordingByteRange.__table__.columns]
    return Table(name, MetaData(), *columns)
