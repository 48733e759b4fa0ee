"""SQLAlchemy models of the catalog; the Alembic migrations in migrations/ must match them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vault_store.catalog.records import BlobState

# Explicit constraint names: migrations then name things identically on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RecordingByteRange(Base):
    """Where one sealed frame lives, and the wrapped key that sealed it.

    The primary key is the logical identity: a duplicate delivery is ignored (first write wins).
    There is deliberately no foreign key to `blob`: rows are inserted only after their blob is
    uploaded and recorded in the same transaction, and an RI trigger per row would halve COPY.

    On PostgreSQL the table is range-partitioned by `expiry_bucket`: the day its replay's first
    row expires, fixed in the `replay` table on first sight, so all of a replay's rows share one
    partition (a lookup touches one, and a duplicate delivered days later still meets its first
    copy's primary key). Whole partitions are dropped when everything in them has expired.
    SQLite keeps one plain table with the same columns and keys.
    """

    __tablename__ = "recording_byte_range"
    # Retention scans by expiry in chunks. On PostgreSQL a BRIN index serves that at almost no
    # insert cost (rows arrive in time order); a btree there would slow COPY by about 20%.
    __table_args__ = (
        Index(
            "ix_recording_byte_range_expires_at",
            "expires_at",
            postgresql_using="brin",
        ),
        {"postgresql_partition_by": "RANGE (expiry_bucket)"},
    )

    project_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    replay_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    part: Mapped[str] = mapped_column(String(16), primary_key=True, default="recording")
    blob_path: Mapped[str] = mapped_column(String(255))
    start: Mapped[int] = mapped_column(BigInteger)
    stop: Mapped[int] = mapped_column(BigInteger)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    kek: Mapped[str] = mapped_column(String(512))
    key_check: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    expiry_bucket: Mapped[date] = mapped_column(Date, primary_key=True)


class Replay(Base):
    """One row per stored replay: the partition its rows live in (its first expiry day)."""

    __tablename__ = "replay"
    # The order a deletion walks a project's replays in (partitions.delete_replays_rows).
    __table_args__ = (
        Index(
            "ix_replay_project_id_expiry_bucket_replay_id",
            "project_id",
            "expiry_bucket",
            "replay_id",
        ),
    )

    project_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    replay_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    expiry_bucket: Mapped[date] = mapped_column(Date, index=True)
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp)


class Blob(Base):
    """A packed object in the blob store, with its live (still referenced) byte count."""

    __tablename__ = "blob"

    path: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    frame_count: Mapped[int] = mapped_column(Integer)
    live_bytes: Mapped[int] = mapped_column(BigInteger)
    retention_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    # live | dead (no live bytes) | deleted (object removed from the store)
    state: Mapped[str] = mapped_column(String(16), default=BlobState.LIVE.value, index=True)
    # Written by compaction (finished replays, contiguous in segment order), not by a flush.
    compacted: Mapped[bool] = mapped_column(Boolean, default=False)


class Deletion(Base):
    """One deletion request (replay, user or project) and its progress."""

    __tablename__ = "deletion"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[int] = mapped_column(BigInteger, index=True)
    target: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    status: Mapped[str] = mapped_column(String(24))
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    rows_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_shredded: Mapped[int] = mapped_column(BigInteger, default=0)
    replays_deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    overwrite_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    overwrite_done_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Rows of the target found by the transaction that marked it done (always 0), and when.
    verified_rows_left: Mapped[int | None] = mapped_column(BigInteger)
    verified_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # nothing_held because an earlier deletion already took the replay: that deletion.
    previous_deletion_id: Mapped[str | None] = mapped_column(String(32))


class KekInUse(Base):
    """A key-encryption key some row or secret of this catalog is wrapped under.

    Recorded in the transaction that first stores such a row, so every command can check at start
    that the configured KMS holds each one (a lost key file is a configuration error then).
    """

    __tablename__ = "kek_in_use"

    kek: Mapped[str] = mapped_column(String(512), primary_key=True)
    first_used_at: Mapped[datetime] = mapped_column(Timestamp)
    # A keyed digest of the local key version (None for Cloud KMS): tells a replaced key file.
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)


class Tombstone(Base):
    """A deleted replay (replay_id set) or a whole deleted project (replay_id NULL).

    Ingest consults it so a late segment of a deleted target is dropped, never given a new key.
    """

    __tablename__ = "tombstone"
    __table_args__ = (Index("ix_tombstone_project_id_replay_id", "project_id", "replay_id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(BigInteger)
    replay_id: Mapped[str | None] = mapped_column(String(32))
    deletion_id: Mapped[str] = mapped_column(ForeignKey("deletion.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class ReplaySubject(Base):
    """Keyed HMAC of a user identifier seen in a replay, so user deletes need no clear text."""

    __tablename__ = "replay_subject"
    __table_args__ = (
        Index("ix_replay_subject_project_id_subject_hash", "project_id", "subject_hash"),
    )

    project_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    replay_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)


class OverwriteJob(Base):
    """A byte range that must be zeroed, recorded before its range row is deleted."""

    __tablename__ = "overwrite_job"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    deletion_id: Mapped[str] = mapped_column(ForeignKey("deletion.id"), index=True)
    blob_path: Mapped[str] = mapped_column(String(255), index=True)
    start: Mapped[int] = mapped_column(BigInteger)
    stop: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    done_at: Mapped[datetime | None] = mapped_column(Timestamp)


class SupersededRange(Base):
    """Where compaction copied a frame from: the old copy, on record while its blob exists (and
    a while after, for a soft delete window), so a forced overwrite of the replay zeroes it too
    and reports count it.

    Holds no key: only the replay it belongs to and the byte range in the source blob.
    """

    __tablename__ = "superseded_range"
    __table_args__ = (Index("ix_superseded_range_project_id_replay_id", "project_id", "replay_id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(BigInteger)
    replay_id: Mapped[str] = mapped_column(String(32))
    blob_path: Mapped[str] = mapped_column(String(255), index=True)
    start: Mapped[int] = mapped_column(BigInteger)
    stop: Mapped[int] = mapped_column(BigInteger)
    # The compacted blob the frame was copied into, and when.
    compacted_into: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # When GC or expiry deleted the source blob (a GCS soft delete may keep it a while more).
    collected_at: Mapped[datetime | None] = mapped_column(Timestamp)


class CatalogSecret(Base):
    """A catalog-wide secret (the subject HMAC key), stored only wrapped by the KMS."""

    __tablename__ = "catalog_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class ApiToken(Base):
    """A bearer token of the read API: only a hash of its secret is kept."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(255))
    # JSON list of project ids, and comma-separated permissions (read, delete, audit).
    projects: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AuditEvent(Base):
    """Append-only, hash-chained record of what was done (each row hashes the previous one).

    `seq` is assigned by the writer (last + 1) under a lock, so it is covered by the hash and a
    removed or reordered event breaks the chain.
    """

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
