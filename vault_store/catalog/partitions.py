"""Partitions of recording_byte_range on PostgreSQL: list, create ahead, drop when expired.

A partition holds the rows whose `expiry_bucket` (the day their replay's first row expires)
falls in its range of days: one day, or one week with VAULT_STORE_CATALOG_PARTITION=week. A new
partition never overlaps an existing one (its range is clipped to the gap it fills), so changing
the width later is safe. SQLite has no partitions: these functions answer for one plain table.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
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
    PostgreSQL table, one query over the parent finds the chunk's `(tableoid, ctid)` pairs, then
    one DELETE per partition that holds some of them removes those rows by ctid (unique only
    within its partition), with `where` checked again: a ctid freed and reused between the two
    statements can only ever name a row of the target. Partitions holding none of the chunk
    are not visited. (One DELETE over the parent by `(tableoid, ctid)` would be planned as a
    join of every matching row of every partition against the chunk.)
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
    found: list[Any] = conn.execute(  # type: ignore[assignment]
        select(literal_column("tableoid"), literal_column("ctid"))
        .select_from(rbr)
        .where(where)
        .limit(limit)
    ).all()
    if not found:
        return []
    by_partition: dict[int, list[str]] = {}
    for oid, ctid in found:
        by_partition.setdefault(int(oid), []).append(str(ctid))
    names: dict[int, str] = dict(
        conn.execute(
            text("SELECT oid, relname FROM pg_class WHERE oid = ANY(CAST(:oids AS oid[]))"),
            {"oids": sorted(by_partition)},
        ).all()
    )
    deleted: list[ByteRange] = []
    for oid, ctids in sorted(by_partition.items()):
        table = _partition_table(str(names[oid]))
        # The same condition, on the partition's columns (subqueries on other tables untouched).
        local = ClauseAdapter(
            table,
            include_fn=lambda column: getattr(column, "table", None) is rbr.__table__,
            adapt_on_names=True,
        ).traverse(where)
        statement = (
            delete(table)
            .where(text("ctid = ANY(CAST(:ctids AS tid[]))").bindparams(ctids=ctids), local)
            .returning(table.c.blob_path, table.c.start, table.c.stop)
        )
        deleted += [ByteRange(*row) for row in conn.execute(statement)]
    return deleted


@functools.lru_cache(maxsize=4096)
def _partition_table(name: str) -> Table:
    """A lightweight Table naming one partition, with the range table's columns."""
    columns = [Column(c.name, c.type) for c in RecordingByteRange.__table__.columns]
    return Table(name, MetaData(), *columns)


@dataclass
class ReplayWalk:
    """Where a replay-by-replay deletion has got to (PostgreSQL): a hint, never a promise.

    `after` is the (bucket, replay id) of the last replay whose rows are all gone;
    `rows_per_replay` how many rows the replays walked so far held, to size the next batch.
    Losing it (a new process) only means the walk starts again at the first replay, stepping
    over emptied ones at the cost of one index probe each; the deletion's finishing count, not
    this, says whether it is done.
    """

    after: tuple[date, str] = (date.min, "")
    rows_per_replay: float = 25.0
    exhausted: bool = False


# Replays taken from the replay table per statement, at most.
_WALK_BATCH_MAX = 2000


def delete_replays_rows(
    conn: Connection,
    project_id: int,
    replays: str,
    params: dict[str, Any],
    limit: int,
    walk: ReplayWalk,
) -> list[ByteRange]:
    """Delete up to `limit` rows of the project's replays, walking them in (bucket, replay id)
    order, each group of one bucket in the one partition that bucket names (PostgreSQL).

    `replays` restricts the replays walked (an SQL condition on `r`, the replay table, with
    `params`); an empty string walks every replay of the project. A batch of replays comes from
    the replay table's (project, bucket, replay) index after `walk.after`; each bucket's group
    is deleted by ctid from an index scan of just those replays in its partition, with a
    constant bucket so PostgreSQL plans that one partition only. So a chunk never revisits the
    index entries of rows earlier chunks deleted (a scan of the project's index would, until
    vacuum: the cost of a chunk grew with what was already deleted), and never looks into
    partitions its replays do not live in. Rows no replay row leads to are left to
    `delete_rows`, once the walk is exhausted.
    """
    deleted: list[ByteRange] = []
    # Which partition holds each bucket met in this chunk (this transaction's view).
    holders: dict[date, str] = {}
    while len(deleted) < limit and not walk.exhausted:
        remaining = limit - len(deleted)
        batch = max(1, min(_WALK_BATCH_MAX, int(remaining / walk.rows_per_replay) + 1))
        # Our own constant SQL; `replays` is one of the caller's constants too, never input.
        found = conn.execute(
            text(
                "SELECT r.expiry_bucket, r.replay_id FROM replay r "  # noqa: S608
                "WHERE r.project_id = :project "
                "AND (r.expiry_bucket, r.replay_id) > (:after_bucket, :after_replay) "
                f"{'AND ' + replays if replays else ''} "
                # LIMIT as a subquery: the planner then assumes it takes a small part of the
                # rows and walks the index in order. Given the number, analyzed or not, it
                # chose a bitmap scan of all the project's replays left and a sort of them,
                # for every batch: a project's shred read its replay rows again and again.
                "ORDER BY r.expiry_bucket, r.replay_id LIMIT (SELECT CAST(:batch AS bigint))"
            ),
            {
                **params,
                "project": project_id,
                "after_bucket": walk.after[0],
                "after_replay": walk.after[1],
                "batch": batch,
            },
        ).all()
        if not found:
            walk.exhausted = True
            break
        groups: dict[date, list[str]] = {}
        for bucket, replay_id in found:
            groups.setdefault(bucket, []).append(replay_id)
        walked = 0
        for bucket, names in groups.items():
            left = limit - len(deleted)
            rows = _delete_in_bucket(conn, project_id, bucket, names, left, holders)
            deleted += rows
            if len(rows) >= left:
                # The chunk is full, perhaps before this group's last row: the walk stays
                # before the group (the next chunk probes these replays again, and only them).
                break
            walked += len(names)
            walk.after = (bucket, names[-1])
        else:
            walk.rows_per_replay = max(1.0, (len(deleted) - (limit - remaining)) / walked)
    return deleted


def _delete_in_bucket(
    conn: Connection,
    project_id: int,
    bucket: date,
    replays: list[str],
    limit: int,
    holders: dict[date, str],
) -> list[ByteRange]:
    # Sent to the partition itself: through the parent, planning the statement alone cost
    # about 3.6 ms with 147 partitions (pruning them), more than running it. Every row with
    # this bucket lives in this one partition. One primary-key probe per replay (the lateral
    # subquery, kept apart by OFFSET 0): given the list as a filter instead, the planner may
    # scan every entry of the project in the partition, deleted ones included.
    name = holders.get(bucket) or _holder(conn, bucket, holders)
    if name is None:
        return []  # no partition holds the bucket: no row can have it
    rows = conn.execute(
        text(
            f"DELETE FROM {name} WHERE ctid = ANY(ARRAY("  # noqa: S608
            "SELECT x.ctid FROM unnest(CAST(:replays AS text[])) AS v(replay_id), LATERAL ("
            f"SELECT t.ctid FROM {name} t WHERE t.project_id = :project "
            "AND t.replay_id = v.replay_id AND t.expiry_bucket = :bucket OFFSET 0) AS x "
            "LIMIT :limit)) RETURNING blob_path, start, stop"
        ),
        {"project": project_id, "bucket": bucket, "replays": replays, "limit": limit},
    )
    return [ByteRange(*row) for row in rows]


def _holder(conn: Connection, bucket: date, holders: dict[date, str]) -> str | None:
    """The partition holding `bucket`, from the catalog's current list (names and bounds only,
    read at most once per chunk); every partition's days are remembered in `holders`."""
    if holders.get(_LISTED) is None:
        holders[_LISTED] = ""
        found = conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass)"
            ),
            {"table": TABLE},
        ).all()
        for name, bound in found:
            match = _BOUNDS.search(bound or "")
            if match is None or not is_partition(str(name)):
                continue
            first, end = (date.fromisoformat(value) for value in match.groups())
            day = first
            while day < end:
                holders[day] = str(name)
                day += timedelta(days=1)
    return holders.get(bucket)


# The key in a chunk's `holders` that says the partition list was read.
_LISTED = date.min
