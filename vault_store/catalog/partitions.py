"""Partitions of recording_byte_range on PostgreSQL: list, create ahead, drop when expired.

A partition holds the rows whose `expiry_bucket` (the day their replay's first row expires)
falls in its range of days: one day, or one week with VAULT_STORE_CATALOG_PARTITION=week. A new
partition never overlaps an existing one (its range is clipped to the gap it fills), so changing
the width later is safe. SQLite has no partitions: these functions answer for one plain table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import psycopg2.errors
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.sql.util import ClauseAdapter

from vault_store.catalog.models import OverwriteJob, RecordingByteRange, Timestamp
from vault_store.catalog.records import DeletedRows, Partition, as_utc
from vault_store.errors import BackendUnavailable, CorruptData

TABLE = "recording_byte_range"
_Result = TypeVar("_Result")
PREFIX = f"{TABLE}_p"
_BOUNDS = re.compile(r"FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)")


def is_partition(name: str) -> bool:
    """Whether a table name is one of our partitions (kept out of schema comparisons)."""
    suffix = name[len(PREFIX) :]
    return name.startswith(PREFIX) and suffix.isascii() and suffix.isdigit()


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
        days = _days_of(bound)
        if days is None:
            continue  # not one of ours (a DEFAULT partition someone added)
        first, end = days
        # reltuples is -1 until the first ANALYZE (or VACUUM): no estimate at all yet.
        analyzed = int(rows) >= 0
        listed.append(
            Partition(str(name), first, end, max(int(rows), 0), int(size), analyzed=analyzed)
        )
    return sorted(listed, key=lambda p: p.first)


def _days_of(bound: str | None) -> tuple[date, date] | None:
    """A range partition's bounds as its first day and the day after its last (None for any
    other kind of partition)."""
    match = _BOUNDS.search(bound or "")
    if match is None:
        return None
    first, end = (date.fromisoformat(value) for value in match.groups())
    return first, end


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


@dataclass(frozen=True, slots=True)
class OverwriteJobs:
    """Record each deleted row's byte range as an overwrite job of this deletion, in the
    statement that deletes it."""

    deletion_id: str
    created_at: datetime


# The chunk's row ids on SQLite: a temporary table, private to its connection (see
# _delete_rows_sqlite), created when the connection opens (Catalog's SQLite pragmas), not by
# a statement per chunk. Named with its schema, so no table of the catalog can shadow it.
CHUNK_TABLE_DDL = "CREATE TEMP TABLE IF NOT EXISTS deleted_chunk (rid INTEGER PRIMARY KEY)"
_CHUNK = Table("deleted_chunk", MetaData(), Column("rid", Integer, primary_key=True), schema="temp")
_JOB_COLUMNS = ["deletion_id", "blob_path", "start", "stop", "created_at"]


def delete_rows(
    conn: Connection,
    where: ColumnElement[bool],
    limit: int,
    *,
    jobs: OverwriteJobs | None = None,
) -> DeletedRows:
    """Delete up to `limit` range rows matching `where`; returns how many, and their bytes per
    blob, summed by the database (no row travels back to Python). With `jobs`, each row's
    range is recorded as an overwrite job in the same transaction.

    By physical row id from an index-driven subquery: no list of keys travels back and forth,
    whatever the chunk size. On SQLite that is rowid (see _delete_rows_sqlite). On the
    partitioned PostgreSQL table, one query over the parent finds the chunk's `(tableoid, ctid)`
    pairs, then one DELETE per partition that holds some of them removes those rows by ctid
    (unique only within its partition), with `where` checked again: a ctid freed and reused
    between the two statements can only ever name a row of the target. Partitions holding none
    of the chunk are not visited. (One DELETE over the parent by `(tableoid, ctid)` would be
    planned as a join of every matching row of every partition against the chunk.)
    """
    rbr = RecordingByteRange
    if conn.dialect.name != "postgresql":
        return _delete_rows_sqlite(conn, where, limit, jobs)
    found: list[Any] = conn.execute(  # type: ignore[assignment]
        select(literal_column("tableoid"), literal_column("ctid"))
        .select_from(rbr)
        .where(where)
        .limit(limit)
    ).all()
    deleted = DeletedRows()
    if not found:
        return deleted
    by_partition: dict[int, list[str]] = {}
    for oid, ctid in found:
        by_partition.setdefault(int(oid), []).append(str(ctid))
    names: dict[int, str] = dict(
        conn.execute(
            text("SELECT oid, relname FROM pg_class WHERE oid = ANY(CAST(:oids AS oid[]))"),
            {"oids": sorted(by_partition)},
        ).all()
    )
    for oid, ctids in sorted(by_partition.items()):
        table = _partition_table(str(names[oid]))
        # The same condition, on the partition's columns (subqueries on other tables untouched).
        local = ClauseAdapter(
            table,
            include_fn=lambda column: getattr(column, "table", None) is rbr.__table__,
            adapt_on_names=True,
        ).traverse(where)
        gone = (
            delete(table)
            .where(text("ctid = ANY(CAST(:ctids AS tid[]))").bindparams(ctids=ctids), local)
            .returning(table.c.blob_path, table.c.start, table.c.stop)
            .cte("gone")
        )
        deleted.extend(_summed(conn, gone, jobs))
    return deleted


def _delete_rows_sqlite(
    conn: Connection, where: ColumnElement[bool], limit: int, jobs: OverwriteJobs | None
) -> DeletedRows:
    # SQLite has no DELETE inside a WITH, so the sums are read before the DELETE. Both, and the
    # overwrite jobs, must name exactly the same rows: a `LIMIT` subquery repeated in each
    # statement is not promised to pick the same ones, so the chunk's row ids are put in a
    # temporary table first. The transaction holds SQLite's write lock: no row can change
    # between these statements.
    rbr = RecordingByteRange
    row_id: ColumnElement[Any] = literal_column("rowid")
    # Emptied first, whatever an earlier chunk on this connection left in it.
    conn.execute(delete(_CHUNK))
    taken = conn.execute(
        insert(_CHUNK).from_select(
            ["rid"], select(row_id).select_from(rbr).where(where).limit(limit)
        )
    ).rowcount
    deleted = DeletedRows()
    if not taken:
        return deleted
    victims = row_id.in_(select(_CHUNK.c.rid).scalar_subquery())
    if jobs is not None:
        conn.execute(
            insert(OverwriteJob).from_select(
                _JOB_COLUMNS, select(*_job_values(rbr.__table__, jobs)).where(victims)
            )
        )
    summed = (
        select(rbr.blob_path, func.count(), func.sum(rbr.stop - rbr.start))
        .where(victims)
        .group_by(rbr.blob_path)
    )
    for path, rows, size in conn.execute(summed):
        deleted.add(str(path), int(rows), int(size))
    removed = conn.execute(delete(rbr).where(victims)).rowcount
    if removed != deleted.rows:
        # Not under the write lock, unless the database skips deletes (a trigger, edited by
        # hand): the transaction is rolled back rather than the blobs' live bytes drifting.
        raise CorruptData(
            f"the catalog deleted {removed} of the {deleted.rows} range rows chosen; "
            "nothing was deleted"
        )
    return deleted


def _job_values(source: Any, jobs: OverwriteJobs) -> list[ColumnElement[Any]]:
    """The overwrite_job columns (_JOB_COLUMNS) of each row of `source`."""
    return [
        literal(jobs.deletion_id, String()),
        source.c.blob_path,
        source.c.start,
        source.c.stop,
        literal(jobs.created_at, Timestamp),
    ]


def _summed(conn: Connection, gone: Any, jobs: OverwriteJobs | None) -> DeletedRows:
    """Run a `DELETE .. RETURNING blob_path, start, stop` given as the CTE `gone` (PostgreSQL),
    recording the overwrite jobs in the same statement if asked; its rows and bytes per blob."""
    statement = select(
        gone.c.blob_path, func.count(), func.sum(gone.c.stop - gone.c.start)
    ).group_by(gone.c.blob_path)
    if jobs is not None:
        # Run to completion though the outer query never reads it (a data-modifying WITH).
        statement = statement.add_cte(
            insert(OverwriteJob)
            .from_select(_JOB_COLUMNS, select(*_job_values(gone, jobs)))
            .cte("jobs")
        )
    return _tallied(conn.execute(statement))


def _tallied(per_blob: Iterable[Any]) -> DeletedRows:
    """The (blob_path, rows, bytes) rows of a summing DELETE statement, as DeletedRows."""
    deleted = DeletedRows()
    for path, rows, size in per_blob:
        deleted.add(str(path), int(rows), int(size))
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
    this, says whether it is done. `unreached` is set when that count found rows the walk did
    not lead to (their replay row gone): only then does the general pass look for them.
    """

    after: tuple[date, str] = (date.min, "")
    rows_per_replay: float = 25.0
    exhausted: bool = False
    unreached: bool = False


# Replays taken from the replay table per statement, at most.
_WALK_BATCH_MAX = 2000


def delete_replays_rows(
    conn: Connection,
    project_id: int,
    replays: str,
    params: dict[str, Any],
    limit: int,
    walk: ReplayWalk,
    days: PartitionDays,
    *,
    jobs: OverwriteJobs | None = None,
) -> DeletedRows:
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
    `delete_rows`, once the walk is exhausted. Returns what `delete_rows` does.
    """
    deleted = DeletedRows()
    # Which partition holds each bucket day (read at the chunk's first group, from `days`).
    holders: Mapping[date, str] | None = None
    while deleted.rows < limit and not walk.exhausted:
        remaining = limit - deleted.rows
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
            left = limit - deleted.rows
            if holders is None:
                holders = days.read(conn)
            holder = holders.get(bucket)
            rows = _delete_in_bucket(conn, project_id, bucket, names, left, holder, jobs)
            deleted.extend(rows)
            if rows.rows >= left:
                # The chunk is full, perhaps before this group's last row: the walk stays
                # before the group (the next chunk probes these replays again, and only them).
                break
            walked += len(names)
            walk.after = (bucket, names[-1])
        else:
            walk.rows_per_replay = max(1.0, (deleted.rows - (limit - remaining)) / walked)
    return deleted


def _delete_in_bucket(
    conn: Connection,
    project_id: int,
    bucket: date,
    replays: list[str],
    limit: int,
    name: str | None,
    jobs: OverwriteJobs | None,
) -> DeletedRows:
    # Sent to the partition itself: through the parent, planning the statement alone cost
    # about 3.6 ms with 147 partitions (pruning them), more than running it. Every row with
    # this bucket lives in this one partition. One primary-key probe per replay (the lateral
    # subquery, kept apart by OFFSET 0): given the list as a filter instead, the planner may
    # scan every entry of the project in the partition, deleted ones included.
    if name is None:
        return DeletedRows()  # no partition holds the bucket: no row can have it
    # Driver SQL, not an SQLAlchemy construct: a shred visits most partitions once or twice,
    # and compiling the statement for each (with a table object per partition) took 0.36 s of
    # client time in a 1.46 s shred at 50M rows (docs/benchmarks.md, sixth pass).
    with PartitionGone.raised_for_a_missing_table():
        deleted = conn.exec_driver_sql(
            _delete_in_partition_sql(name, with_jobs=jobs is not None),
            {
                "project": project_id,
                "bucket": bucket,
                "replays": replays,
                "limit": limit,
                **(
                    {"deletion": jobs.deletion_id, "created": jobs.created_at}
                    if jobs is not None
                    else {}
                ),
            },
        )
        return _tallied(deleted)


@functools.lru_cache(maxsize=4096)
def _delete_in_partition_sql(name: str, *, with_jobs: bool) -> str:
    """The statement of _delete_in_bucket for partition `name` (psycopg2's placeholders): the
    group's rows deleted by ctid, summed per blob in the same statement (a DELETE inside a
    WITH: the rows never travel), with each row's range recorded as an overwrite job if asked."""
    if not is_partition(name):
        raise ValueError(f"not a partition of {TABLE}: {name!r}")
    # The partition's name is ours (checked above), never input; the rest are placeholders.
    jobs = (
        f", jobs AS (INSERT INTO overwrite_job ({', '.join(_JOB_COLUMNS)}) "  # noqa: S608
        "SELECT %(deletion)s, blob_path, start, stop, %(created)s FROM gone)"
        if with_jobs
        else ""
    )
    return (
        f"WITH gone AS (DELETE FROM {name} WHERE ctid = ANY(ARRAY("  # noqa: S608
        "SELECT x.ctid FROM unnest(CAST(%(replays)s AS text[])) AS v(replay_id), LATERAL ("
        f"SELECT t.ctid FROM {name} t WHERE t.project_id = %(project)s "
        "AND t.replay_id = v.replay_id AND t.expiry_bucket = %(bucket)s OFFSET 0) AS x "
        f"LIMIT %(limit)s)) RETURNING blob_path, start, stop){jobs} "
        "SELECT blob_path, count(*), sum(stop - start) FROM gone GROUP BY blob_path"
    )


@functools.lru_cache(maxsize=256)
def stored_segments_sql(names: tuple[str, ...]) -> str:
    """Which of some replays' segments have rows, asked of the partitions `names` themselves:
    for partition i, the replays of arrays `projects_i`, `replays_i`, `buckets_i`, `lows_i`,
    `highs_i` (psycopg2's placeholders; one primary-key range probe per replay). Through the
    parent, the same probes took 23 ms for a flush's 500 replays at 147 partitions, against 8
    ms sent to the one partition holding them: planning every partition, and pruning them again
    for each replay as the statement ran (docs/benchmarks.md, seventh pass)."""
    scans = []
    for index, name in enumerate(names):
        if not is_partition(name):
            raise ValueError(f"not a partition of {TABLE}: {name!r}")
        # The partition's name is ours (checked above), never input. OFFSET 0 keeps each probe
        # a separate scan driven by its replay's values.
        scans.append(
            f"SELECT v.p, v.r, t.segment_id FROM unnest(CAST(%(projects_{index})s AS bigint[]), "  # noqa: S608
            f"CAST(%(replays_{index})s AS text[]), CAST(%(buckets_{index})s AS date[]), "
            f"CAST(%(lows_{index})s AS bigint[]), CAST(%(highs_{index})s AS bigint[])) "
            f"AS v(p, r, b, low, high), LATERAL (SELECT t.segment_id FROM {name} t "
            "WHERE t.project_id = v.p AND t.replay_id = v.r AND t.segment_id BETWEEN v.low "
            "AND v.high AND t.expiry_bucket = v.b OFFSET 0) AS t"
        )
    return " UNION ALL ".join(scans)


class PartitionGone(Exception):
    """A partition a statement named was dropped (by retention) after the partitions were read:
    the statement's transaction is lost, and redoing it reads them anew (PartitionDays)."""

    def __init__(self) -> None:
        super().__init__("a partition of the catalog was dropped while a statement named it")

    @staticmethod
    @contextmanager
    def raised_for_a_missing_table() -> Iterator[None]:
        """Turn PostgreSQL's "relation does not exist" from the statements inside into this."""
        try:
            yield
        except ProgrammingError as exc:
            if isinstance(exc.orig, psycopg2.errors.UndefinedTable):
                raise PartitionGone from None
            raise


def redone_if_a_partition_went(op: str, attempt: Callable[[], _Result]) -> _Result:
    """`attempt()` (a whole transaction), redone once if it named a partition that retention
    dropped meanwhile: its transaction was rolled back, and the partitions are read anew. A
    second miss is BackendUnavailable (retryable)."""
    try:
        return attempt()
    except PartitionGone:
        pass
    try:
        return attempt()
    except PartitionGone as exc:
        raise BackendUnavailable(str(exc), backend="catalog", op=op) from None


class PartitionDays:
    """Which partition holds each bucket day, for statements sent to one partition: a
    deletion's chunks, a flush's check for stored segments (PostgreSQL; one per Catalog).

    Reading every partition's bounds (their expressions deparsed) took 2.2 ms a chunk with 147
    partitions, as much as a chunk's walk. The days are kept instead, with the oids of the
    partitions they were read from; a chunk reads only those oids, and the bounds again when
    the set differs (a partition created, or dropped by retention, since): a dropped partition
    is then never named, and a new one always known. Shared by threads: one reference,
    replaced whole.
    """

    def __init__(self) -> None:
        self._read: tuple[tuple[int, ...], Mapping[date, str]] = ((), {})

    def read(self, conn: Connection) -> Mapping[date, str]:
        """Each day's partition as of this statement (one catalog lookup when nothing changed)."""
        oids = tuple(int(oid) for oid in conn.execute(_PARTITION_OIDS, {"table": TABLE}).scalars())
        known, holders = self._read
        if oids and oids == known:
            return holders
        found = conn.execute(
            text(
                "SELECT c.oid, c.relname, pg_get_expr(c.relpartbound, c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass) ORDER BY c.oid"
            ),
            {"table": TABLE},
        ).all()
        days: dict[date, str] = {}
        for _oid, name, bound in found:
            bounds = _days_of(bound)
            if bounds is None or not is_partition(str(name)):
                continue
            first, end = bounds
            day = first
            while day < end:
                days[day] = str(name)
                day += timedelta(days=1)
        self._read = (tuple(int(oid) for oid, _name, _bound in found), days)
        return days


_PARTITION_OIDS = text(
    "SELECT inhrelid FROM pg_inherits WHERE inhparent = CAST(:table AS regclass) ORDER BY inhrelid"
)
