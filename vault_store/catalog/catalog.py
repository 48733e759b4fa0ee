"""The Catalog: range rows, blobs and tombstones over SQLAlchemy, on PostgreSQL or SQLite."""

from __future__ import annotations

import functools
import logging
import operator
import os
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg2.errors
import psycopg2.extensions
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.log import InstanceLogger
from sqlalchemy.sql.dml import Insert

from vault_store.catalog import audit, copy_rows, migrate
from vault_store.catalog.blobs import BlobIntentLost, record_uploaded
from vault_store.catalog.keys import record_keks
from vault_store.catalog.models import (
    Base,
    Blob,
    RecordingByteRange,
    Replay,
    ReplaySubject,
    Tombstone,
)
from vault_store.catalog.partitions import (
    CHUNK_TABLE_DDL,
    PartitionDays,
    PartitionGone,
    bucket_of,
    ensure,
    partitions,
    redone_if_a_partition_went,
    stored_segments_sql,
)
from vault_store.catalog.records import (
    MAX_STORED_ID,
    BlobRecord,
    BlobState,
    CatalogStats,
    InsertOutcome,
    Partition,
    RangeRecord,
    ReplayState,
    as_utc,
)
from vault_store.errors import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from vault_store.catalog.audit import AuditRepository
    from vault_store.catalog.blobs import BlobRepository
    from vault_store.catalog.compaction import CompactionRepository
    from vault_store.catalog.deletions import DeletionRepository
    from vault_store.catalog.keys import KeyRepository
    from vault_store.catalog.partitions_admin import PartitionRepository
    from vault_store.catalog.reports import ReportRepository
    from vault_store.catalog.secrets import SecretRepository
    from vault_store.catalog.tokens import TokenRepository

_BACKEND = "catalog"
# Advisory lock key serializing partition creation (any constant unique to this use).
_PARTITION_LOCK = 0x7661756C74706172
# Advisory locks of (this space, hash of a replay) order flushes of one replay's segments; the
# two-integer key space never meets the one-integer keys of projects and partitions.
_SEGMENT_LOCK_SPACE = 0x76617573
_RANGE_COLUMNS = (
    "project_id",
    "replay_id",
    "segment_id",
    "part",
    "blob_path",
    "start",
    "stop",
    "wrapped_dek",
    "kek",
    "key_check",
    "created_at",
    "expires_at",
    "expiry_bucket",
)
_COPY_CHUNK = 256 * 1024
# A flush touches every one of its rows for these: attrgetter walks 5,000 rows in C.
_REPLAY_OF = operator.attrgetter("project_id", "replay_id")
_KEK_OF = operator.attrgetter("kek")
_START_OF = operator.attrgetter("start")
_STOP_OF = operator.attrgetter("stop")
# Execution option marking a connection of Catalog.transaction (SQLite: BEGIN IMMEDIATE).
_WRITE_OPTION = "vault_store_write"


class Catalog:
    """Metadata database of vault-store; one class for PostgreSQL (production) and SQLite."""

    def __init__(
        self,
        url: str,
        *,
        engine_options: dict[str, Any] | None = None,
        partition_width: str = "day",
        connect_timeout: float = 5.0,
        statement_timeout: float = 120.0,
        busy_timeout: float = 30.0,
    ) -> None:
        if partition_width not in ("day", "week"):
            raise ConfigError("VAULT_STORE_CATALOG_PARTITION: expected day or week")
        self.partition_width = partition_width
        # Partitions this process knows exist: a flush checks here before any DDL.
        self._known_partitions: list[Partition] = []
        self._partition_lock = threading.Lock()
        # Which partition holds each bucket day, for statements sent to one partition.
        self.partition_days = PartitionDays()
        # KEKs this process has seen committed to kek_in_use (a flush records only new ones).
        self._recorded_keks: set[str] = set()
        try:
            parsed = make_url(url)
        except SQLAlchemyError as exc:
            raise ConfigError(f"catalog URL is not a database URL: {exc}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("postgresql", "sqlite"):
            raise ConfigError(f"catalog URL: unsupported database {self.dialect!r}")
        # Bulk inserts use psycopg2's COPY; newer SQLAlchemy would pick psycopg 3 by default.
        if self.dialect == "postgresql" and parsed.get_driver_name() != "psycopg2":
            parsed = parsed.set(drivername="postgresql+psycopg2")
        options = dict(engine_options or {})
        # Statement parameters hold wrapped keys: keep them out of logs and error messages.
        options.setdefault("hide_parameters", True)
        # Where the catalog is, for error messages: host and port, or the file; never a password.
        self.location = _location(parsed)
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            _prepare_sqlite_file(Path(parsed.database))
        if self.dialect == "postgresql":
            options.setdefault("pool_pre_ping", True)
            connect_args = dict(options.pop("connect_args", {}))
            # libpq takes whole seconds; a server that accepts but never answers fails in this
            # time instead of hanging. Keepalives notice a peer that vanished mid-statement.
            connect_args.setdefault("connect_timeout", max(1, round(connect_timeout)))
            connect_args.setdefault("keepalives", 1)
            connect_args.setdefault("keepalives_idle", 30)
            connect_args.setdefault("keepalives_interval", 10)
            connect_args.setdefault("keepalives_count", 3)
            # Added to the URL's own ?options= (a search_path, say), never in its place:
            # connect_args would override the URL's value.
            given = connect_args.get("options", parsed.query.get("options", ""))
            given = given if isinstance(given, str) else " ".join(given)
            # JIT off, before the URL's options so that they can turn it back on. The catalog's
            # statements are index probes, but over a big partitioned table the planner's cost
            # estimates pass jit_above_cost, and compiling one plan node per partition cost
            # 160 ms of a 20 ms count at 146 partitions (docs/scaling.md).
            settings = f"-c jit=off {given}"
            if statement_timeout > 0:
                milliseconds = max(1, round(statement_timeout * 1000))
                settings += f" -c statement_timeout={milliseconds}"
            connect_args["options"] = settings.strip()
            options["connect_args"] = connect_args
        self.engine: Engine = create_engine(parsed, **options)
        _hide_result_rows(self.engine)
        if self.dialect == "sqlite":
            busy_ms = max(1, round(busy_timeout * 1000))
            event.listen(
                self.engine,
                "connect",
                lambda connection, record: _sqlite_pragmas(connection, record, busy_ms),
            )
            event.listen(self.engine, "begin", _sqlite_begin)

    def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        with self._errors("migrate"):
            migrate.upgrade(self.engine)

    def ping(self) -> None:
        """One round trip to the database (BackendUnavailable or ConfigError if it fails)."""
        with self._errors("ping"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (after a fork, or at exit)."""
        self.engine.dispose()

    # -- repositories, one per aggregate (built on first use) ----------------------------
    @functools.cached_property
    def audit_trail(self) -> AuditRepository:
        """The audit trail's reading side: events and verification."""
        from vault_store.catalog.audit import AuditRepository

        return AuditRepository(self)

    @functools.cached_property
    def keys(self) -> KeyRepository:
        """Wrapped data keys and secrets by key version (status, rewrap)."""
        from vault_store.catalog.keys import KeyRepository

        return KeyRepository(self)

    @functools.cached_property
    def reports(self) -> ReportRepository:
        """What the compliance report reads: deletions, their remains, storage."""
        from vault_store.catalog.reports import ReportRepository

        return ReportRepository(self)

    @functools.cached_property
    def secrets(self) -> SecretRepository:
        """The catalog's own wrapped secrets (the subject key)."""
        from vault_store.catalog.secrets import SecretRepository

        return SecretRepository(self)

    @functools.cached_property
    def deletions(self) -> DeletionRepository:
        """Deletion requests, their tombstones, chunked row deletion and overwrite jobs."""
        from vault_store.catalog.deletions import DeletionRepository

        return DeletionRepository(self)

    @functools.cached_property
    def blobs(self) -> BlobRepository:
        """Blob records: dead, expired and forgotten blobs, live bytes, retention classes."""
        from vault_store.catalog.blobs import BlobRepository

        return BlobRepository(self)

    @functools.cached_property
    def compaction(self) -> CompactionRepository:
        """Finished replays, repointing their rows to a compacted blob, superseded copies."""
        from vault_store.catalog.compaction import CompactionRepository

        return CompactionRepository(self)

    @functools.cached_property
    def partitions_admin(self) -> PartitionRepository:
        """Partition housekeeping: create ahead, drop expired, forget empty replays, sizes."""
        from vault_store.catalog.partitions_admin import PartitionRepository

        return PartitionRepository(self)

    @functools.cached_property
    def tokens(self) -> TokenRepository:
        """API tokens."""
        from vault_store.catalog.tokens import TokenRepository

        return TokenRepository(self)

    # -- writes ---------------------------------------------------------------------------

    def insert_blob(
        self,
        blob: BlobRecord,
        ranges: Sequence[RangeRecord],
        *,
        subjects: Collection[tuple[int, str, bytes]] = (),
    ) -> InsertOutcome:
        """Record an uploaded blob, its range rows and its replays' subjects in one transaction.

        Call only after the blob is durably in the store: a row must never point at a missing
        blob. Rows of tombstoned replays or projects are dropped; duplicates of rows already
        present are ignored (first write wins) and their bytes count as dead.
        """
        bucket = bucket_of(blob.expires_at)
        if self.dialect == "postgresql":
            self.ensure_partition(bucket)
        # Redone once if retention dropped a partition its checks named (PartitionGone).
        try:
            return redone_if_a_partition_went(
                "insert", lambda: self._insert_blob(blob, ranges, subjects, bucket, staged=False)
            )
        except _RangeConflict:
            # The COPY met a row that is already there (a flush holding one segment twice):
            # its whole transaction was rolled back, so it is redone, every check included,
            # through the staging table that skips such rows.
            return redone_if_a_partition_went(
                "insert", lambda: self._insert_blob(blob, ranges, subjects, bucket, staged=True)
            )

    def _insert_blob(
        self,
        blob: BlobRecord,
        ranges: Sequence[RangeRecord],
        subjects: Collection[tuple[int, str, bytes]],
        bucket: date,
        *,
        staged: bool,
    ) -> InsertOutcome:
        new_keks: set[str] = set()
        with self.transaction("insert") as conn:
            if self.dialect == "postgresql":
                keep, already, buckets = self._admit_postgresql(
                    conn, ranges, bucket, blob.created_at
                )
            else:
                self.lock_projects(conn, {row.project_id for row in ranges}, shared=True)
                keep = self._drop_tombstoned(conn, ranges)
                # A segment is one unit: a later delivery of a stored segment id is ignored
                # whole.
                keep, already = self._drop_stored_segments(conn, keep)
                buckets = self._replay_buckets(
                    conn, {(row.project_id, row.replay_id) for row in keep}, bucket, blob.created_at
                )
            live_replays = {(row.project_id, row.replay_id) for row in keep} if subjects else set()
            new_subjects = [
                {"project_id": project, "replay_id": replay, "subject_hash": subject}
                for project, replay, subject in subjects
                if (project, replay) in live_replays
            ]
            if new_subjects:
                conn.execute(self.insert_ignoring_conflicts(ReplaySubject), new_subjects)
            # The KEKs these rows need, so a command can check at start that the KMS has them.
            # (Each only once per process: the list only grows, and a write costs a round trip.)
            new_keks = set(map(_KEK_OF, keep)) - self._recorded_keks
            record_keks(conn, self, new_keks, blob.created_at)
            if self.dialect == "postgresql":
                inserted, live = _insert_ranges_postgresql(conn, keep, buckets, staged=staged)
            else:
                inserted, live = _insert_ranges_sqlite(conn, keep, buckets)
            # The pending intent recorded before the upload becomes this blob's record; an
            # intent GC already took fails the flush (it is redone under a new path).
            try:
                record_uploaded(conn, blob, live_bytes=live)
            except BlobIntentLost as exc:
                raise BackendUnavailable(str(exc), backend=_BACKEND, op="insert") from None
        # Committed: these KEKs are on record for good.
        self._recorded_keks |= new_keks
        return InsertOutcome(
            inserted=inserted,
            duplicates=len(keep) - inserted + already,
            dropped_deleted=len(ranges) - len(keep) - already,
            live_bytes=live,
        )

    def ensure_partition(self, bucket: date) -> None:
        """Make sure a partition holds `bucket` (PostgreSQL; a no-op on SQLite).

        Usually one exists already (the maintenance job creates them ahead) and this is a
        look at this process's list; otherwise it creates one in its own short transaction.
        """
        if self.dialect != "postgresql":
            return
        with self._partition_lock:
            if any(p.covers(bucket) for p in self._known_partitions):
                return
            with self.transaction("partition") as conn:
                # Serialize creators: two flushes must not race to create overlapping ranges.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK})
                known = partitions(conn)
                created = ensure(conn, bucket, self.partition_width, known)
                self._known_partitions = known + ([created] if created else [])

    def forget_partitions(self) -> None:
        """Drop this process's list of partitions (after some were dropped)."""
        with self._partition_lock:
            self._known_partitions = []

    def _admit_postgresql(
        self, conn: Connection, ranges: Sequence[RangeRecord], bucket: date, now: datetime
    ) -> tuple[list[RangeRecord], int, dict[tuple[int, str], date]]:
        """A flush's checks on PostgreSQL, in two statements sent in one round trip whatever its
        size: the rows to insert (tombstoned replays and segments already stored dropped), how many
        rows of stored segments were dropped, and each kept replay's bucket.

        Locks first, in the first statement: each project shared (a deletion request takes it
        exclusively, so this flush commits before its tombstone exists or sees it), then each
        replay exclusively (two flushes of one segment cannot both find it absent), each kind
        in sorted order, so flushes never wait on each other in a cycle.
        """
        replays = sorted(set(map(_REPLAY_OF, ranges)))
        # Then the rest in a second statement, sent with the first in one round trip:
        # in READ COMMITTED each statement takes its own snapshot, so this one, started once
        # the locks are held, sees a tombstone committed while the flush waited. It finds which
        # replays are tombstoned, the others' buckets (new ones recorded in this flush's
        # bucket, counted). Under the replay locks no flush records these replays meanwhile; a
        # count short of the new ones (another writer's rows this snapshot missed) has them
        # read again. The stored segments come after.
        answer = conn.execute(
            _LOCK_AND_ADMIT,
            {
                "lock_projects": _bigint_array(sorted({project for project, _ in replays})),
                "space": _SEGMENT_LOCK_SPACE,
                "keys": _text_array(f"{project}:{replay}" for project, replay in replays),
                "projects": _bigint_array(p for p, _ in replays),
                "replays": _text_array(r for _, r in replays),
                "bucket": bucket,
                "now": now,
            },
        ).all()
        dead: set[tuple[int, str]] = set()
        found: dict[tuple[int, str], date] = {}
        added = 0
        for kind, project, replay, replay_bucket in answer:
            if kind == _ADMIT_NEW:
                added = int(project)
            elif kind == _ADMIT_DEAD:
                dead.add((int(project), str(replay)))
            else:
                found[(int(project), str(replay))] = replay_bucket
        known = dict(found)
        keep = (
            [row for row in ranges if (row.project_id, row.replay_id) not in dead]
            if dead
            else list(ranges)
        )
        new = [pair for pair in replays if pair not in found and pair not in dead]
        if added == len(new):
            found.update(dict.fromkeys(new, bucket))
        else:
            # Some were recorded by another writer after this statement's snapshot was taken:
            # every new one is read again (ours too; they are then probed for stored segments
            # below, in vain).
            again = self._buckets_of(conn, new)
            found.update(again)
            known.update(again)
        # Only a replay recorded before this flush can have rows, all in its bucket's
        # partition. A statement of its own, sent only then: in the statement above, naming
        # the partitioned table made every flush cost 0.7 to 1 s with 147 partitions, though
        # it probed nothing.
        stored = _stored_in_buckets(conn, keep, known, self.partition_days) if known else set()
        if not stored:
            return keep, 0, found
        # A segment is one unit: a later delivery of a stored segment id is ignored whole.
        kept = [r for r in keep if (r.project_id, r.replay_id, r.segment_id) not in stored]
        return kept, len(keep) - len(kept), found

    def replay_bucket(self, project_id: int, replay_id: str) -> date | None:
        """The bucket (partition) a replay's rows live in, or None if it has none."""
        with self._errors("read"), self.engine.connect() as conn:
            return _bucket_of(conn, project_id, replay_id)

    def _replay_buckets(
        self,
        conn: Connection,
        replays: Collection[tuple[int, str]],
        bucket: date,
        now: datetime,
    ) -> dict[tuple[int, str], date]:
        """Each replay's bucket: the one it got on first sight, else `bucket` (recorded now).
        SQLite's path; PostgreSQL does this in one statement (_admit_postgresql)."""
        if not replays:
            return {}
        wanted = sorted(replays)
        found = self._buckets_of(conn, wanted)
        missing = [pair for pair in wanted if pair not in found]
        if missing:
            # The statement and values SQLAlchemy would send for insert_ignoring_conflicts(Replay)
            # (the types' own bind processors render the day and the time), sent to the driver
            # in one executemany: SQLAlchemy's per-row parameter handling cost 8 ms a flush of
            # 507 new replays, more than the statement.
            columns = Replay.__table__.c
            day_text = columns.expiry_bucket.type.dialect_impl(conn.dialect).bind_processor(
                conn.dialect
            )
            moment_text = columns.first_seen_at.type.dialect_impl(conn.dialect).bind_processor(
                conn.dialect
            )
            assert day_text is not None
            assert moment_text is not None
            bucket_text, now_text = day_text(bucket), moment_text(now)
            conn.exec_driver_sql(
                "INSERT INTO replay (project_id, replay_id, expiry_bucket, first_seen_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(p, r, bucket_text, now_text) for p, r in missing],
            )
            # Another flush may have recorded some of them first: theirs is the bucket.
            found |= self._buckets_of(conn, missing)
        return found

    @staticmethod
    def _buckets_of(
        conn: Connection, replays: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], date]:
        if conn.dialect.name == "postgresql":
            # Two array parameters instead of a compiled IN list of thousands of pairs.
            rows = conn.execute(
                text(
                    "SELECT r.project_id, r.replay_id, r.expiry_bucket FROM replay r "
                    "JOIN unnest(CAST(:projects AS bigint[]), CAST(:replays AS text[])) "
                    "AS wanted(project_id, replay_id) USING (project_id, replay_id)"
                ),
                {"projects": [p for p, _ in replays], "replays": [r for _, r in replays]},
            ).all()
            return {(int(p), str(r)): b for p, r, b in rows}
        # Sent to the driver as is: SQLAlchemy's rendering of 2,000 expanding pairs cost more
        # than running the statement.
        rows = _joined_with_wanted(
            conn,
            replays,
            "p, r",
            "SELECT replay.project_id, replay.replay_id, replay.expiry_bucket "
            "FROM wanted CROSS JOIN replay "
            "ON replay.project_id = wanted.p AND replay.replay_id = wanted.r",
            per_statement=2000,
        )
        return {(int(p), str(r)): _day(b) for p, r, b in rows}

    def tombstoned(self, replays: Collection[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which of these (project_id, replay_id) are deleted (the replay or its project)."""
        if not replays:
            return set()
        if len(replays) == 1:
            ((project_id, replay_id),) = replays
            if project_id <= MAX_STORED_ID:
                dead = self._tombstone_of(project_id, replay_id)
                return {(project_id, replay_id)} if dead else set()
        with self.connection("tombstones") as conn:
            return self._tombstoned(conn, replays)

    def _tombstone_of(self, project_id: int, replay_id: str) -> bool:
        """Whether one replay or its project is deleted: one statement on a pooled driver
        connection. Ingest asks this before every new replay key; through SQLAlchemy's
        connection (its BEGIN, execution context and reset) it cost about ten times the
        query (550 against 50 microseconds on SQLite). One statement reads one snapshot, so
        no transaction is needed; the pool still rolls the connection back on return."""
        with self._errors("tombstones"), self._driver_cursor() as cursor:
            return _driver_tombstoned(cursor, self.dialect, project_id, replay_id)

    @contextmanager
    def _read_cursor(self) -> Iterator[Any]:
        """A driver cursor on a pooled connection, for a read's few statements.

        A read's range rows went through SQLAlchemy's connection and rows (its BEGIN,
        execution context, statement cache lookup, a Row and type processing per row): about
        7.5 microseconds a row on SQLite, against about 1 for the driver's own tuples. On
        SQLite the statements share one snapshot (a deferred BEGIN, as every read through
        engine.connect() has, see _sqlite_begin); on PostgreSQL each reads its own, as
        before (READ COMMITTED). The pool rolls the connection back on return.
        """
        with self._driver_cursor() as cursor:
            if self.dialect == "sqlite":
                cursor.execute("BEGIN")
            yield cursor

    @contextmanager
    def _driver_cursor(self) -> Iterator[Any]:
        """A driver cursor on a pooled connection; the pool rolls the connection back on
        return. A connection the server dropped is invalidated first, as SQLAlchemy's own
        connection would do, instead of going back to the pool, whose rollback would then fail
        and log the driver's traceback."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        except (psycopg2.Error, sqlite3.Error) as exc:
            if self.engine.dialect.is_disconnect(cast(Any, exc), connection.dbapi_connection, None):
                connection.invalidate(exc)
            raise
        finally:
            connection.close()

    def record_dropped_deleted(
        self,
        *,
        actor: str,
        at: datetime,
        segments: int,
        replays: int,
        by_project: Mapping[int, int],
    ) -> None:
        """One audit event for the segments of deleted targets that ingest dropped."""
        with self.transaction("ingest") as conn:
            audit.append(
                conn,
                kind="ingest.dropped_deleted",
                actor=actor,
                at=at,
                details={
                    "segments": segments,
                    "replays": replays,
                    "by_project": {str(p): n for p, n in sorted(by_project.items())},
                },
            )

    def stored_segments(
        self, segments: Collection[tuple[int, str, int]]
    ) -> set[tuple[int, str, int]]:
        """Which of these (project, replay, segment) already have rows (any part)."""
        if self.dialect != "postgresql":
            with self._errors("read"), self.engine.connect() as conn:
                return self._stored_segments(conn, segments)
        return redone_if_a_partition_went(
            "read", lambda: self._stored_in_their_partitions(segments)
        )

    def _stored_in_their_partitions(
        self, segments: Collection[tuple[int, str, int]]
    ) -> set[tuple[int, str, int]]:
        with self._errors("read"), self.engine.connect() as conn:
            wanted = sorted({(project, replay) for project, replay, _ in segments})
            found = self._buckets_of(conn, wanted) if wanted else {}
            return _stored_in_buckets(conn, segments, found, self.partition_days)

    def _drop_stored_segments(
        self, conn: Connection, ranges: Sequence[RangeRecord]
    ) -> tuple[list[RangeRecord], int]:
        """Drop every row of a segment that already has rows: a later delivery of a segment,
        whatever its content or parts, is ignored whole, so a read never mixes two versions.

        Replays are locked exclusively (PostgreSQL, transaction-scoped, in sorted order) so two
        flushes of one segment cannot both see it absent; SQLite serializes writers itself.
        """
        replays = sorted({(row.project_id, row.replay_id) for row in ranges})
        if self.dialect == "postgresql":
            for project, replay in replays:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                    {"space": _SEGMENT_LOCK_SPACE, "key": f"{project}:{replay}"},
                )
        stored = self._stored_segments(
            conn, {(row.project_id, row.replay_id, row.segment_id) for row in ranges}
        )
        keep = [r for r in ranges if (r.project_id, r.replay_id, r.segment_id) not in stored]
        return keep, len(ranges) - len(keep)

    @staticmethod
    def _stored_segments(
        conn: Connection, segments: Collection[tuple[int, str, int]]
    ) -> set[tuple[int, str, int]]:
        if conn.dialect.name == "sqlite":
            return _stored_segments_sqlite(conn, segments)
        found: set[tuple[int, str, int]] = set()
        by_replay: dict[tuple[int, str], set[int]] = {}
        for project, replay, segment in segments:
            by_replay.setdefault((project, replay), set()).add(segment)
        pairs = sorted(by_replay)
        for chunk in range(0, len(pairs), 500):
            wanted = pairs[chunk : chunk + 500]
            rows = conn.execute(
                select(
                    RecordingByteRange.project_id,
                    RecordingByteRange.replay_id,
                    RecordingByteRange.segment_id,
                )
                .where(
                    tuple_(RecordingByteRange.project_id, RecordingByteRange.replay_id).in_(wanted),
                    RecordingByteRange.segment_id.in_(
                        {s for pair in wanted for s in by_replay[pair]}
                    ),
                )
                .distinct()
            ).all()
            found |= {(p, r, s) for p, r, s in rows if s in by_replay.get((p, r), ())}
        return found

    def _drop_tombstoned(
        self, conn: Connection, ranges: Sequence[RangeRecord]
    ) -> list[RangeRecord]:
        dead = self._tombstoned(conn, {(row.project_id, row.replay_id) for row in ranges})
        return [row for row in ranges if (row.project_id, row.replay_id) not in dead]

    @staticmethod
    def _tombstoned(conn: Connection, replays: Collection[tuple[int, str]]) -> set[tuple[int, str]]:
        projects = {project for project, _ in replays}
        if not projects:
            return set()
        # Only the tombstones that can match these replays: theirs, and whole projects.
        # Tombstones accumulate with every deletion; a flush must not read them all.
        dead = conn.execute(
            _TOMBSTONES_OF_SQLITE if conn.dialect.name == "sqlite" else _TOMBSTONES_OF,
            {"projects": list(projects), "replays": list({replay for _, replay in replays})},
        ).all()
        dead_projects = {project for project, replay in dead if replay is None}
        dead_replays = {(project, replay) for project, replay in dead if replay is not None}
        return {pair for pair in replays if pair[0] in dead_projects or pair in dead_replays}

    # -- reads ----------------------------------------------------------------------------

    def replay_ranges(
        self,
        project_id: int,
        replay_id: str,
        *,
        after_segment: int | None = None,
        stop_segment: int | None = None,
        limit: int = 100,
        min_segment: int = 0,
        parts: Collection[str] | None = None,
    ) -> list[RangeRecord]:
        """Up to `limit` rows of one replay in (segment, part) order, after a cursor, optionally
        only of some parts. Bounds past the largest storable id select nothing beyond it."""
        query = _driver_range_query(
            self.dialect,
            project_id,
            replay_id,
            after_segment=after_segment,
            stop_segment=stop_segment,
            limit=limit,
            min_segment=min_segment,
            parts=parts,
        )
        if query is None:
            return []
        sql, args = query
        with self._errors("read"), self._read_cursor() as cursor:
            bucket = _driver_bucket(cursor, self.dialect, project_id, replay_id)
            if bucket is None:
                return []
            # A constant bucket lets PostgreSQL look in one partition only.
            cursor.execute(sql, (project_id, replay_id, bucket, *args))
            rows = cursor.fetchall()
        return _range_records(rows)

    def replay_page(
        self,
        project_id: int,
        replay_id: str,
        *,
        min_segment: int = 0,
        stop_segment: int | None = None,
        limit: int = 100,
    ) -> tuple[ReplayState, list[RangeRecord]]:
        """The replay's state (see replay_state) and, unless it is shredded, up to `limit` of
        its rows from `min_segment` (as replay_ranges), on one connection.

        A read needs both; this way it costs one range query, plus an existence probe only
        when the page is empty (to tell a replay read past its end from an unknown one).
        """
        if project_id > MAX_STORED_ID:
            return ReplayState.UNKNOWN, []
        query = _driver_range_query(
            self.dialect,
            project_id,
            replay_id,
            stop_segment=stop_segment,
            limit=limit,
            min_segment=min_segment,
        )
        dialect = self.dialect
        with self._errors("read"), self._read_cursor() as cursor:
            if _driver_tombstoned(cursor, dialect, project_id, replay_id):
                return ReplayState.SHREDDED, []
            bucket = _driver_bucket(cursor, dialect, project_id, replay_id)
            if bucket is None:
                return _state_of_no_rows(cursor, dialect, project_id, replay_id, None), []
            rows: list[Any] = []
            if query is not None:
                sql, args = query
                # A constant bucket lets PostgreSQL look in one partition only.
                cursor.execute(sql, (project_id, replay_id, bucket, *args))
                rows = cursor.fetchall()
            if rows:
                return ReplayState.STORED, _range_records(rows)
            return _state_of_no_rows(cursor, dialect, project_id, replay_id, bucket), []

    def replay_page_at(
        self, project_id: int, replay_id: str, *, offset: int, segments: int
    ) -> tuple[ReplayState, list[RangeRecord]]:
        """The replay's state and, unless it is shredded, every row of its segments number
        `offset` to `offset + segments - 1` in segment order (0 is the first stored segment,
        whatever its id), in (segment, part) order, with one range query.

        Offsets count stored segments, not ids: a client that computes page offsets from a
        segment count (as Sentry's frontend does) gets each segment exactly once even when ids
        have gaps. An empty page is told apart from an unknown replay as in replay_page.
        """
        if project_id > MAX_STORED_ID:
            return ReplayState.UNKNOWN, []
        dialect = self.dialect
        with self._errors("read"), self._read_cursor() as cursor:
            if _driver_tombstoned(cursor, dialect, project_id, replay_id):
                return ReplayState.SHREDDED, []
            bucket = _driver_bucket(cursor, dialect, project_id, replay_id)
            if bucket is None:
                return _state_of_no_rows(cursor, dialect, project_id, replay_id, None), []
            # A constant bucket lets PostgreSQL look in one partition only.
            owner = (project_id, replay_id, bucket)
            cursor.execute(_PAGE_AT_SQL[dialect], (*owner, *owner, segments, offset))
            rows = cursor.fetchall()
            if rows:
                return ReplayState.STORED, _range_records(rows)
            return _state_of_no_rows(cursor, dialect, project_id, replay_id, bucket), []

    def replay_state(self, project_id: int, replay_id: str) -> ReplayState:
        """SHREDDED once a deletion of it (or its project) is recorded, even while its rows are
        still being deleted; else STORED if any row exists; else UNKNOWN."""
        state, _rows = self.replay_page(project_id, replay_id, limit=1)
        return state

    def stats(self) -> CatalogStats:
        """Replays, segments, rows, blobs and byte totals."""
        rbr = RecordingByteRange
        replays = select(rbr.project_id, rbr.replay_id).distinct().subquery()
        segments = select(rbr.project_id, rbr.replay_id, rbr.segment_id).distinct().subquery()
        with self._errors("stats"), self.engine.connect() as conn:
            replay_count = conn.execute(select(func.count()).select_from(replays)).scalar_one()
            segment_count = conn.execute(select(func.count()).select_from(segments)).scalar_one()
            row_count = conn.execute(select(func.count()).select_from(rbr)).scalar_one()
            blob_count, stored, live = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(Blob.size), 0),
                    func.coalesce(func.sum(Blob.live_bytes), 0),
                    # Pending intents are not blobs yet (their rows may never come).
                ).where(Blob.state.in_((BlobState.LIVE.value, BlobState.DEAD.value)))
            ).one()
            video_parts, video_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(rbr.stop - rbr.start), 0)).where(
                    rbr.part == "video"
                )
            ).one()
        return CatalogStats(
            replays=replay_count,
            segments=segment_count,
            rows=row_count,
            blobs=blob_count,
            bytes_stored=int(stored),
            live_bytes=int(live),
            video_parts=video_parts,
            video_bytes=int(video_bytes),
        )

    def lock_projects(self, conn: Connection, projects: Collection[int], *, shared: bool) -> None:
        """Order flushes and deletion requests of the same projects.

        A flush holds a shared lock per project while it checks tombstones and inserts; a
        deletion request holds it exclusively while it writes the tombstone. So a flush either
        commits before the tombstone exists (its rows are then deleted by the shred, which runs
        after) or sees the tombstone and drops its rows: no row of a deleted replay can slip in
        between. Transaction-scoped; sorted to avoid deadlocks.

        On PostgreSQL these are advisory locks. On SQLite the lock is already held: every
        `transaction` starts with `BEGIN IMMEDIATE` (see _sqlite_begin), which takes the
        database's single write lock before the first read, so the checks a flush or a deletion
        makes hold until it commits. A `conn` that does not hold it is a bug, refused here.
        """
        if self.dialect == "sqlite":
            if not conn.get_execution_options().get(_WRITE_OPTION):
                raise RuntimeError("lock_projects needs a transaction() connection on SQLite")
            return
        if self.dialect != "postgresql":
            return
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        for project in sorted(projects):
            conn.execute(text(f"SELECT {function}(:key)"), {"key": project})

    def insert_ignoring_conflicts(self, model: type[Base]) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING for this database (first write wins)."""
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement: Insert = dialect_insert(model).on_conflict_do_nothing()
        return statement

    @contextmanager
    def transaction(self, op: str) -> Iterator[Connection]:
        """A connection in a transaction that commits on success; errors mapped (see _errors).

        On SQLite it begins with the write lock (`BEGIN IMMEDIATE`): what it reads holds until
        it commits, and it never fails halfway on a snapshot another writer made stale.
        """
        with (
            self._errors(op),
            self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def connection(self, op: str) -> Iterator[Connection]:
        """A connection for reads; errors mapped (see _errors)."""
        with self._errors(op), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        """Map database errors: lost or refused connections are retryable, the rest are not."""
        try:
            yield
        except (DBAPIError, psycopg2.Error, sqlite3.Error) as exc:
            brief = _brief(exc)
            if _is_configuration(exc, brief):
                # Not "retry later": a wrong name, password or permission stays wrong.
                raise ConfigError(
                    f"catalog at {self.location}: {brief} (check VAULT_STORE_DATABASE_URL, "
                    "the database's permissions and the directory's)"
                ) from None
            where = f"{brief} (at {self.location})"
            invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
            # psycopg2 reports a connection found closed as an InterfaceError.
            retryable = (
                OperationalError
                | psycopg2.OperationalError
                | psycopg2.InterfaceError
                | sqlite3.OperationalError
            )
            if isinstance(exc, retryable) or invalidated:
                raise BackendUnavailable(where, backend=_BACKEND, op=op) from None
            raise BackendError(where, backend=_BACKEND, op=op) from None
        except SQLAlchemyError as exc:
            raise BackendError(_brief(exc), backend=_BACKEND, op=op) from None


def _insert_ranges_postgresql(
    conn: Connection,
    rows: Sequence[RangeRecord],
    buckets: dict[tuple[int, str], date],
    *,
    staged: bool,
) -> tuple[int, int]:
    """COPY straight into the table; `staged`, through a staging table that skips duplicates.

    Duplicates are rare (the flush's checks drop segments already stored), so the common path
    is a bare COPY, with no savepoint around it (two round trips per flush): a COPY that meets
    a duplicate fails the transaction with _RangeConflict, and the caller redoes it staged.
    COPY cannot skip conflicting rows, so the staged path copies into a temporary table and
    inserts from it with ON CONFLICT DO NOTHING, summing the bytes of the rows that went in.
    """
    if not rows:
        return 0, 0
    driver = conn.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    encoding = psycopg2.extensions.encodings[driver.encoding]  # type: ignore[union-attr]
    columns = ", ".join(copy_rows.COLUMNS)
    if not staged:
        try:
            _copy(cursor, "recording_byte_range", columns, rows, buckets, encoding)
        except psycopg2.errors.UniqueViolation:
            raise _RangeConflict from None
        return len(rows), sum(map(_STOP_OF, rows)) - sum(map(_START_OF, rows))
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_range "
        "(LIKE recording_byte_range INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy(cursor, "incoming_range", columns, rows, buckets, encoding)
    # Column names are our own constants, never input.
    insert_new = (
        f"INSERT INTO recording_byte_range ({columns}) SELECT {columns} FROM incoming_range "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING stop - start"
    )
    cursor.execute(insert_new)
    sizes = [size for (size,) in cursor.fetchall()]
    return len(sizes), sum(sizes)


def _copy(
    cursor: Any,
    table: str,
    columns: str,
    rows: Sequence[RangeRecord],
    buckets: dict[tuple[int, str], date],
    encoding: str,
) -> None:
    """COPY the rows into `table` in binary form; an error while encoding (UnencodableRow for
    a row that cannot be, or a bug) is raised as itself, never as psycopg2's cancelled query,
    which would read as a lost connection and be retried."""
    stream = copy_rows.CopyStream(copy_rows.binary_copy(rows, buckets, encoding))
    try:
        cursor.copy_expert(
            f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)", stream, _COPY_CHUNK
        )
    except psycopg2.Error:
        if stream.failure is not None:
            raise stream.failure from None
        raise
    if cursor.rowcount != len(rows):
        # PostgreSQL takes a binary stream cut between rows as complete: rows lost on the way
        # must fail the flush (rolled back, its frames kept), never pass as stored.
        raise BackendError(
            f"COPY stored {cursor.rowcount} of {len(rows)} rows", backend=_BACKEND, op="insert"
        )


class _RangeConflict(Exception):
    """A flush's COPY met a range row already stored (its transaction is lost)."""


def _stored_in_buckets(
    conn: Connection,
    segments: Iterable[RangeRecord] | Collection[tuple[int, str, int]],
    buckets: Mapping[tuple[int, str], date],
    days: PartitionDays,
) -> set[tuple[int, str, int]]:
    """Which of these segments have rows (PostgreSQL), given their replays' buckets: one
    primary-key range probe per replay, over the span of segment ids asked for, sent to the
    partition its bucket names (stored_segments_sql). A replay with no bucket, or whose bucket
    no partition holds, has no row at all.

    A partition dropped by retention between reading the partitions and this statement fails
    it with PartitionGone; the caller asks again (the partitions are then read anew).
    """
    spans: dict[tuple[int, str], tuple[int, int]] = {}
    wanted: set[tuple[int, str, int]] = set()
    for item in segments:
        project, replay, segment = (
            (item.project_id, item.replay_id, item.segment_id)
            if isinstance(item, RangeRecord)
            else item
        )
        if (project, replay) not in buckets:
            continue
        wanted.add((project, replay, segment))
        low, high = spans.get((project, replay), (segment, segment))
        spans[(project, replay)] = (min(low, segment), max(high, segment))
    if not spans:
        return set()
    holders = days.read(conn)
    by_partition: dict[str, list[tuple[int, str]]] = {}
    for pair in sorted(spans):
        holder = holders.get(buckets[pair])
        if holder is not None:
            by_partition.setdefault(holder, []).append(pair)
    if not by_partition:
        return set()
    names = tuple(sorted(by_partition))
    values: dict[str, str] = {}
    for index, name in enumerate(names):
        pairs = by_partition[name]
        values[f"projects_{index}"] = _bigint_array(p for p, _ in pairs)
        values[f"replays_{index}"] = _text_array(r for _, r in pairs)
        values[f"buckets_{index}"] = _text_array(buckets[pair].isoformat() for pair in pairs)
        values[f"lows_{index}"] = _bigint_array(spans[pair][0] for pair in pairs)
        values[f"highs_{index}"] = _bigint_array(spans[pair][1] for pair in pairs)
    with PartitionGone.raised_for_a_missing_table():
        rows = conn.exec_driver_sql(stored_segments_sql(names), values).all()
    return {(int(p), str(r), int(s)) for p, r, s in rows} & wanted


def _insert_ranges_sqlite(
    conn: Connection, rows: Sequence[RangeRecord], buckets: dict[tuple[int, str], date]
) -> tuple[int, int]:
    """Stage the rows in a temporary table, then INSERT OR IGNORE them (first write wins).

    Every step is one statement run by SQLite itself; the live bytes are the staged rows that
    are now in the table at this blob's offsets (exact: we hold the write lock until commit).
    """
    if not rows:
        return 0, 0
    columns = ", ".join(_RANGE_COLUMNS)
    # Timestamps in exactly the text form SQLAlchemy's SQLite DateTime writes and reads back.
    timestamp = RecordingByteRange.__table__.c.created_at.type.dialect_impl(conn.dialect)
    to_text = timestamp.bind_processor(conn.dialect)
    assert to_text is not None
    rendered: dict[datetime, str] = {}

    def moment(value: datetime) -> str:
        if value not in rendered:
            rendered[value] = to_text(value)
        return rendered[value]

    # Every statement below is built from the constant column list, never from input.
    conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS incoming_range AS "  # noqa: S608
        f"SELECT {columns} FROM recording_byte_range WHERE 0"
    )
    conn.exec_driver_sql("DELETE FROM incoming_range")
    conn.exec_driver_sql(
        f"INSERT INTO incoming_range ({columns}) VALUES ({', '.join('?' * len(_RANGE_COLUMNS))})",  # noqa: S608
        [
            (
                row.project_id,
                row.replay_id,
                row.segment_id,
                row.part,
                row.blob_path,
                row.start,
                row.stop,
                row.wrapped_dek,
                row.kek,
                row.key_check,
                moment(row.created_at),
                moment(row.expires_at),
                buckets[(row.project_id, row.replay_id)].isoformat(),
            )
            for row in rows
        ],
    )
    inserted = conn.exec_driver_sql(
        f"INSERT OR IGNORE INTO recording_byte_range ({columns}) "  # noqa: S608
        f"SELECT {columns} FROM incoming_range ORDER BY rowid"
    ).rowcount
    live = conn.exec_driver_sql(
        "SELECT coalesce(sum(r.stop - r.start), 0) FROM incoming_range i "
        "JOIN recording_byte_range r ON r.project_id = i.project_id AND r.replay_id = i.replay_id "
        "AND r.segment_id = i.segment_id AND r.part = i.part "
        "AND r.expiry_bucket = i.expiry_bucket "
        "AND r.blob_path = i.blob_path AND r.start = i.start"
    ).scalar_one()
    return inserted, int(live)


def _bucket_of(conn: Connection, project_id: int, replay_id: str) -> date | None:
    """The bucket (partition) recorded for a replay on first sight, or None."""
    bucket: date | None = conn.execute(
        select(Replay.expiry_bucket).where(
            Replay.project_id == project_id, Replay.replay_id == replay_id
        )
    ).scalar_one_or_none()
    return bucket


def _driver_range_query(
    dialect: str,
    project_id: int,
    replay_id: str,
    *,
    after_segment: int | None = None,
    stop_segment: int | None = None,
    limit: int,
    min_segment: int,
    parts: Collection[str] | None = None,
) -> tuple[str, tuple[Any, ...]] | None:
    """The rows query of replay_ranges in the driver's own SQL and its parameters after
    (project_id, replay_id, bucket); None when the bounds select nothing."""
    if project_id > MAX_STORED_ID or min_segment > MAX_STORED_ID:
        return None
    if after_segment is not None and after_segment >= MAX_STORED_ID:
        return None
    if stop_segment is not None and stop_segment > MAX_STORED_ID:
        stop_segment = None
    mark = _MARKS[dialect]
    where = [f"segment_id >= {mark}"]
    args: list[Any] = [min_segment]
    if after_segment is not None:
        where.append(f"segment_id > {mark}")
        args.append(after_segment)
    if stop_segment is not None:
        where.append(f"segment_id < {mark}")
        args.append(stop_segment)
    if parts is not None:
        wanted = sorted(parts)
        if not wanted:
            return None
        where.append(f"part IN ({', '.join([mark] * len(wanted))})")
        args.extend(wanted)
    args.append(limit)
    # Only the column names and placeholders are formatted in; every value is a parameter.
    sql = (
        f"SELECT {', '.join(_RANGE_COLUMNS)} FROM recording_byte_range "  # noqa: S608
        f"WHERE project_id = {mark} AND replay_id = {mark} AND expiry_bucket = {mark} "
        f"AND {' AND '.join(where)} ORDER BY segment_id, part LIMIT {mark}"
    )
    return sql, tuple(args)


def _state_of_no_rows(
    cursor: Any, dialect: str, project_id: int, replay_id: str, bucket: Any
) -> ReplayState:
    """The state of a replay whose page came back empty: STORED if it has rows elsewhere, else
    SHREDDED if its deletion is recorded by now, else UNKNOWN. On PostgreSQL each statement reads
    its own snapshot, so a shred may have committed since the read's first tombstone check and
    taken the rows (and the replay's bucket): it is asked again, so the replay reads as shredded."""
    if bucket is not None:
        cursor.execute(_HAS_ROWS_SQL[dialect], (project_id, replay_id, bucket))
        if cursor.fetchone() is not None:
            return ReplayState.STORED
    if _driver_tombstoned(cursor, dialect, project_id, replay_id):
        return ReplayState.SHREDDED
    return ReplayState.UNKNOWN


def _driver_tombstoned(cursor: Any, dialect: str, project_id: int, replay_id: str) -> bool:
    """Whether a deletion of the replay or of its whole project is recorded (one statement)."""
    cursor.execute(_TOMBSTONE_OF_SQL[dialect], (project_id, replay_id))
    return cursor.fetchone() is not None


def _driver_bucket(cursor: Any, dialect: str, project_id: int, replay_id: str) -> Any:
    """The bucket recorded for a replay as the driver returns it (a date, or SQLite's text,
    which compares equal to the rows' own), or None."""
    cursor.execute(_BUCKET_OF_SQL[dialect], (project_id, replay_id))
    found = cursor.fetchone()
    return None if found is None else found[0]


def _range_records(rows: Sequence[Any]) -> list[RangeRecord]:
    """Range rows as records, positionally in _RANGE_COLUMNS order (expiry_bucket last, not
    kept): a read decodes hundreds of rows, and building a dict per row cost more than the
    query. Rows may be SQLAlchemy's or the driver's own tuples (SQLite's times are text)."""
    # A replay's rows share the few times of the flushes that wrote them, and parsing a time
    # cost more per row than the rest of the record: convert each distinct time once.
    utc: dict[Any, datetime] = {}
    records = []
    for row in rows:
        (project, replay, segment, part, path, start, stop, wrapped, kek, check, made, ends) = row[
            :12
        ]
        created = utc.get(made)
        if created is None:
            created = utc[made] = _moment(made)
        expires = utc.get(ends)
        if expires is None:
            expires = utc[ends] = _moment(ends)
        records.append(
            RangeRecord(
                project,
                replay,
                segment,
                part,
                path,
                start,
                stop,
                bytes(wrapped),
                kek,
                bytes(check),
                created,
                expires,
            )
        )
    return records


def _text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of these strings, each quoted (so none reads as NULL or
    splits), for a `CAST(:x AS text[])` parameter: psycopg2 adapts a list element by element,
    about 2 ms for the 1,500 values of a flush's admission; this is a join and one string."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def _bigint_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of these integers (see _text_array)."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _joined_with_wanted(
    conn: Connection,
    wanted: Sequence[tuple[Any, ...]],
    names: str,
    query: str,
    *,
    per_statement: int,
) -> list[Any]:
    """The rows of `query` (SQLite), which joins a CTE `wanted(names)` holding the `wanted`
    tuples, sent in statements of at most `per_statement` of them.

    The wanted tuples are the outer side of a CROSS JOIN (SQLite keeps that order), so each is
    looked up in the key. A row-value `IN (VALUES ...)` list instead made SQLite scan the
    whole table's key index on every flush, twice: 2-4 ms at 15,000 rows, growing with the
    catalog.
    """
    row = f"({', '.join('?' * (names.count(',') + 1))})"
    rows: list[Any] = []
    for first in range(0, len(wanted), per_statement):
        chunk = wanted[first : first + per_statement]
        rows += conn.exec_driver_sql(
            # Only placeholders and our own constant SQL are formatted in.
            f"WITH wanted({names}) AS (VALUES {', '.join([row] * len(chunk))}) {query}",
            tuple(value for values in chunk for value in values),
        ).all()
    return rows


def _stored_segments_sqlite(
    conn: Connection, segments: Collection[tuple[int, str, int]]
) -> set[tuple[int, str, int]]:
    """Which of these (project, replay, segment) have rows: one primary-key probe each."""
    rows = _joined_with_wanted(
        conn,
        sorted(set(segments)),
        "p, r, s",
        "SELECT DISTINCT stored.project_id, stored.replay_id, stored.segment_id "
        "FROM wanted CROSS JOIN recording_byte_range AS stored "
        "ON stored.project_id = wanted.p AND stored.replay_id = wanted.r "
        "AND stored.segment_id = wanted.s",
        per_statement=1000,
    )
    return {(int(p), str(r), int(s)) for p, r, s in rows}


def _day(value: date | str) -> date:
    # The driver hands SQLite's DATE back as its text ('YYYY-MM-DD'), as SQLAlchemy stores it.
    return value if isinstance(value, date) else date.fromisoformat(value)


def _moment(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime: SQLite's driver returns the text SQLAlchemy
    wrote ("2026-12-07 19:12:56.123456", UTC without an offset), PostgreSQL's a datetime."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_ms: int) -> None:
    # pysqlite would BEGIN only before the first INSERT/UPDATE/DELETE, leaving a transaction's
    # reads (a tombstone check) outside it. Turn that off and BEGIN ourselves (_sqlite_begin),
    # SQLAlchemy's documented recipe for SQLite's own transaction semantics.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # busy_timeout first: setting WAL itself may wait for another process's lock.
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    # WAL lets readers run while a flush writes; busy_timeout waits for the writer lock.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A deletion chunk's row ids (partitions._delete_rows_sqlite): in the connection's own
    # temporary schema, made once here rather than by a statement in every chunk.
    cursor.execute(CHUNK_TABLE_DDL)
    cursor.close()


class _NoResultRows(logging.Filter):
    """Drops SQLAlchemy's DEBUG records of result rows: rows carry wrapped keys and key checks.

    hide_parameters keeps statement parameters out; with the engine logger at DEBUG SQLAlchemy
    also logs every fetched row, which this filter on the engine's own logger stops (statements
    are still logged).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


def _hide_result_rows(engine: Engine) -> None:
    logger = engine.logger
    target = logger.logger if isinstance(logger, InstanceLogger) else logger
    if not any(isinstance(existing, _NoResultRows) for existing in target.filters):
        target.addFilter(_NoResultRows())


def _sqlite_begin(conn: Connection) -> None:
    # Write transactions take the write lock first (see Catalog.transaction); reads begin a
    # deferred transaction: one consistent snapshot that never blocks the writer (WAL).
    immediate = conn.get_execution_options().get(_WRITE_OPTION)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _brief(exc: BaseException) -> str:
    # The first line of a driver message names the problem; statement parameters (which could
    # hold wrapped keys) are never included.
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__


# PostgreSQL SQLSTATEs (and driver messages, for failures before a session has one) that mean the
# configuration is wrong: no such database or role, bad password, no permission.
_CONFIG_SQLSTATES = frozenset({"28000", "28P01", "3D000", "42501"})
# ("relation ... does not exist" is a schema problem for `migrate`, so only these names count.)
_CONFIG_MESSAGES = re.compile(
    r'(database|role) "[^"]*" does not exist|password authentication failed|no pg_hba\.conf'
    r"|permission denied|unable to open database file|readonly database|read-only database",
    re.IGNORECASE,
)


def _is_configuration(exc: BaseException, brief: str) -> bool:
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "pgcode", None) in _CONFIG_SQLSTATES:
        return True
    return _CONFIG_MESSAGES.search(brief) is not None


def _location(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _prepare_sqlite_file(path: Path) -> None:
    """Create the catalog's directory; a directory or file we may not write is a ConfigError
    naming it (SQLite would only say "unable to open database file" on first use)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"catalog directory {path.parent}: cannot create it ({exc.strerror})"
        ) from None
    # WAL mode writes -wal and -shm files next to the catalog, even to read.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"catalog directory {path.parent}: not writable by this user")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"catalog file {path}: not readable and writable by this user")


# Built once: making this statement cost more than running it, and ingest runs it for every
# new replay key (expanding parameters keep one compiled form for any number of values).
_TOMBSTONES_OF = select(Tombstone.project_id, Tombstone.replay_id).where(
    Tombstone.project_id.in_(bindparam("projects", expanding=True)),
    Tombstone.replay_id.in_(bindparam("replays", expanding=True)) | Tombstone.replay_id.is_(None),
)
# SQLite's form: two arms, each a probe of (project_id, replay_id) in the index. With the OR in
# one WHERE, SQLite searched on project_id alone and filtered every tombstone of the project
# (17 ms a flush with 100,000 of them in one project); PostgreSQL plans the OR as a BitmapOr of
# two keyed probes, and its plan of the two arms was slower (75 against 98 us a check).
_TOMBSTONES_OF_SQLITE = union_all(
    select(Tombstone.project_id, Tombstone.replay_id).where(
        Tombstone.project_id.in_(bindparam("projects", expanding=True)),
        Tombstone.replay_id.in_(bindparam("replays", expanding=True)),
    ),
    select(Tombstone.project_id, Tombstone.replay_id).where(
        Tombstone.project_id.in_(bindparam("projects", expanding=True)),
        Tombstone.replay_id.is_(None),
    ),
)

# A flush's locks, then its admission on PostgreSQL (Catalog._admit_postgresql): one row per
# replay that is `dead` (it or its project is tombstoned) or `known` (recorded before, with its
# bucket), and one `new` row counting the replays recorded now, in this flush's bucket (their
# names are the flush's own: sending 500 of them back cost more than the count). Every lookup
# is a primary-key probe per replay (LATERAL and EXISTS subqueries, kept apart by OFFSET 0),
# and no step joins two sets, so no plan depends on row estimates (the arrays arrive as text
# literals, and the CTEs' sizes are guesses): a join of the flush's replays against the
# replay table was planned as a scan of all of it, which grows with the catalog, and a
# tombstone check may otherwise be hashed over every tombstone. A project's own tombstone is
# probed once per project; the few tombstoned ones are then an array each replay is compared
# with.
_ADMIT_DEAD, _ADMIT_KNOWN, _ADMIT_NEW = 0, 1, 2
_LOCK_AND_ADMIT = text(
    # The locks (Catalog._admit_postgresql), each kind in sorted order. Only our own constants
    # are formatted in.
    "SELECT (SELECT count(pg_advisory_xact_lock_shared(p)) "  # noqa: S608
    "FROM unnest(CAST(:lock_projects AS bigint[])) AS p), "
    "(SELECT count(pg_advisory_xact_lock(:space, hashtext(k))) "
    "FROM unnest(CAST(:keys AS text[])) AS k); "
    "WITH dead_projects AS MATERIALIZED (SELECT coalesce(array_agg(p), '{}') AS ps "
    "FROM unnest(CAST(:lock_projects AS bigint[])) AS p WHERE EXISTS (SELECT 1 FROM tombstone t "
    "WHERE t.project_id = p AND t.replay_id IS NULL OFFSET 0)), "
    "looked AS MATERIALIZED (SELECT w.p, w.r, "
    "(w.p = ANY(CAST((SELECT ps FROM dead_projects) AS bigint[])) OR EXISTS (SELECT 1 "
    "FROM tombstone t WHERE t.project_id = w.p AND t.replay_id = w.r "
    "OFFSET 0)) AS dead, x.expiry_bucket "
    "FROM unnest(CAST(:projects AS bigint[]), CAST(:replays AS text[])) AS w(p, r) "
    "LEFT JOIN LATERAL (SELECT r.expiry_bucket FROM replay r WHERE r.project_id = w.p "
    "AND r.replay_id = w.r OFFSET 0) AS x ON true), "
    "added AS (INSERT INTO replay (project_id, replay_id, expiry_bucket, first_seen_at) "
    "SELECT p, r, :bucket, :now FROM looked WHERE NOT dead AND expiry_bucket IS NULL "
    "ON CONFLICT DO NOTHING RETURNING 1) "
    f"SELECT {_ADMIT_DEAD}, p, r, CAST(NULL AS date) FROM looked WHERE dead "
    f"UNION ALL SELECT {_ADMIT_KNOWN}, p, r, expiry_bucket FROM looked "
    "WHERE NOT dead AND expiry_bucket IS NOT NULL "
    f"UNION ALL SELECT {_ADMIT_NEW}, count(*), NULL, NULL FROM added"
)

# Each driver's parameter placeholder, for the driver's own SQL below.
_MARKS = {"sqlite": "?", "postgresql": "%s"}

# A read's other lookups, as the driver's own SQL (see Catalog._read_cursor); only the
# placeholders are formatted in.
_BUCKET_OF_SQL = {
    dialect: f"SELECT expiry_bucket FROM replay "  # noqa: S608
    f"WHERE project_id = {mark} AND replay_id = {mark}"
    for dialect, mark in _MARKS.items()
}
_HAS_ROWS_SQL = {
    dialect: f"SELECT 1 FROM recording_byte_range WHERE project_id = {mark} "  # noqa: S608
    f"AND replay_id = {mark} AND expiry_bucket = {mark} LIMIT 1"
    for dialect, mark in _MARKS.items()
}

# The rows of a replay's stored segments number OFFSET to OFFSET + LIMIT - 1 (replay_page_at).
_PAGE_AT_SQL = {
    dialect: (
        f"SELECT {', '.join(_RANGE_COLUMNS)} FROM recording_byte_range "  # noqa: S608
        f"WHERE project_id = {mark} AND replay_id = {mark} AND expiry_bucket = {mark} "
        "AND segment_id IN (SELECT segment_id FROM recording_byte_range "
        f"WHERE project_id = {mark} AND replay_id = {mark} AND expiry_bucket = {mark} "
        f"GROUP BY segment_id ORDER BY segment_id LIMIT {mark} OFFSET {mark}) "
        "ORDER BY segment_id, part"
    )
    for dialect, mark in _MARKS.items()
}

# The same question for one replay, as the driver's own SQL (see Catalog._tombstone_of); on
# SQLite in the same two keyed arms (parameters: project, replay, project): one `OR` read all
# of the project's tombstones there, 9 ms a new replay key with 100,000 of them.
_TOMBSTONE_OF_SQL = {
    "sqlite": "SELECT 1 FROM tombstone WHERE project_id = ?1 AND replay_id = ?2 "
    "UNION ALL SELECT 1 FROM tombstone WHERE project_id = ?1 AND replay_id IS NULL LIMIT 1",
    "postgresql": "SELECT 1 FROM tombstone WHERE project_id = %s AND (replay_id = %s OR "
    "replay_id IS NULL) LIMIT 1",
}
