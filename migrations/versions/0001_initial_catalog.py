"""Initial catalog: range rows, blobs, deletions, tombstones, subjects, overwrite jobs, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The same 64-bit identity column as the models: INTEGER on SQLite so it autoincrements.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every catalog table and its indexes."""
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])

    op.create_table(
        "api_token",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("projects", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
    )

    op.create_table(
        "catalog_secret",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("kek", sa.String(512), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_catalog_secret"),
    )

    op.create_table(
        "blob",
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("live_bytes", sa.BigInteger(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_blob"),
    )
    op.create_index("ix_blob_expires_at", "blob", ["expires_at"])
    op.create_index("ix_blob_state", "blob", ["state"])

    op.create_table(
        "deletion",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("rows_deleted", sa.BigInteger(), nullable=False),
        sa.Column("bytes_shredded", sa.BigInteger(), nullable=False),
        sa.Column("replays_deleted", sa.BigInteger(), nullable=False),
        sa.Column("overwrite_requested", sa.Boolean(), nullable=False),
        sa.Column("overwrite_done_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deletion"),
    )
    op.create_index("ix_deletion_project_id", "deletion", ["project_id"])
    op.create_index("ix_deletion_requested_at", "deletion", ["requested_at"])

    # No foreign key to blob on purpose: see RecordingByteRange in vault_store/catalog/models.py.
    op.create_table(
        "recording_byte_range",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.String(32), nullable=False),
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.String(16), nullable=False),
        sa.Column("blob_path", sa.String(255), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("stop", sa.BigInteger(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("kek", sa.String(512), nullable=False),
        sa.Column("key_check", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "replay_id", "segment_id", "part", name="pk_recording_byte_range"
        ),
    )
    # BRIN on PostgreSQL: see RecordingByteRange.__table_args__ (btree on SQLite).
    op.create_index(
        "ix_recording_byte_range_expires_at",
        "recording_byte_range",
        ["expires_at"],
        postgresql_using="brin",
    )

    op.create_table(
        "replay_subject",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.String(32), nullable=False),
        sa.Column("subject_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "replay_id", "subject_hash", name="pk_replay_subject"
        ),
    )
    op.create_index(
        "ix_replay_subject_project_id_subject_hash",
        "replay_subject",
        ["project_id", "subject_hash"],
    )

    op.create_table(
        "overwrite_job",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("deletion_id", sa.String(32), nullable=False),
        sa.Column("blob_path", sa.String(255), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("stop", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("done_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["deletion_id"], ["deletion.id"], name="fk_overwrite_job_deletion_id_deletion"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_overwrite_job"),
    )
    op.create_index("ix_overwrite_job_blob_path", "overwrite_job", ["blob_path"])
    op.create_index("ix_overwrite_job_deletion_id", "overwrite_job", ["deletion_id"])

    op.create_table(
        "tombstone",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.String(32), nullable=True),
        sa.Column("deletion_id", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["deletion_id"], ["deletion.id"], name="fk_tombstone_deletion_id_deletion"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tombstone"),
    )
    op.create_index("ix_tombstone_project_id_replay_id", "tombstone", ["project_id", "replay_id"])


def downgrade() -> None:
    """Drop everything, dependants first."""
    for table in (
        "tombstone",
        "overwrite_job",
        "replay_subject",
        "recording_byte_range",
        "deletion",
        "blob",
        "catalog_secret",
        "api_token",
        "audit_event",
    ):
        op.drop_table(table)
