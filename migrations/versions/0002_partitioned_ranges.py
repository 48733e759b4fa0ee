"""Partition recording_byte_range by expiry day (PostgreSQL); add the replay table.

Every range row gets `expiry_bucket`, the day its replay's first row expires, and the primary
key gains it. On PostgreSQL the table becomes RANGE-partitioned by that column, one partition
per day of existing data (the maintenance command creates later ones ahead, a week wide if so
configured); on SQLite it stays one table. The `replay` table remembers each replay's bucket so
reads touch one partition and later rows of a replay join the same one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
_COLUMNS = (
    "project_id, replay_id, segment_id, part, blob_path, start, stop, wrapped_dek, kek, "
    "key_check, created_at, expires_at"
)


def _range_columns() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    """The replay table, then the bucket column and (PostgreSQL) the partitioned table."""
    op.create_table(
        "replay",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.String(32), nullable=False),
        sa.Column("expiry_bucket", sa.Date(), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "replay_id", name="pk_replay"),
    )
    op.create_index("ix_replay_expiry_bucket", "replay", ["expiry_bucket"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "INSERT INTO replay SELECT project_id, replay_id, min(expires_at)::date, "
            "min(created_at) FROM recording_byte_range GROUP BY project_id, replay_id"
        )
        op.execute("ALTER TABLE recording_byte_range RENAME TO recording_byte_range_unpartitioned")
        op.execute("ALTER INDEX ix_recording_byte_range_expires_at RENAME TO ix_rbr_unpartitioned")
        op.execute(
            "ALTER TABLE recording_byte_range_unpartitioned "
            "RENAME CONSTRAINT pk_recording_byte_range TO pk_rbr_unpartitioned"
        )
        op.create_table(
            "recording_byte_range",
            *_range_columns(),
            sa.Column("expiry_bucket", sa.Date(), nullable=False),
            sa.PrimaryKeyConstraint(
                "project_id",
                "replay_id",
                "segment_id",
                "part",
                "expiry_bucket",
                name="pk_recording_byte_range",
            ),
            postgresql_partition_by="RANGE (expiry_bucket)",
        )
        op.create_index(
            "ix_recording_byte_range_expires_at",
            "recording_byte_range",
            ["expires_at"],
            postgresql_using="brin",
        )
        days = bind.execute(sa.text("SELECT DISTINCT expiry_bucket FROM replay")).scalars()
        for day in days:
            op.execute(
                f"CREATE TABLE recording_byte_range_p{day:%Y%m%d} PARTITION OF "
                f"recording_byte_range FOR VALUES FROM ('{day}') TO ('{day}'::date + 1)"
            )
        op.execute(
            f"INSERT INTO recording_byte_range ({_COLUMNS}, expiry_bucket) "  # noqa: S608
            f"SELECT {', '.join('o.' + c.strip() for c in _COLUMNS.split(','))}, r.expiry_bucket "
            "FROM recording_byte_range_unpartitioned o JOIN replay r "
            "USING (project_id, replay_id)"
        )
        op.drop_table("recording_byte_range_unpartitioned")
        return
    op.execute(
        "INSERT INTO replay SELECT project_id, replay_id, date(min(expires_at)), min(created_at) "
        "FROM recording_byte_range GROUP BY project_id, replay_id"
    )
    with op.batch_alter_table("recording_byte_range", recreate="always") as batch:
        batch.add_column(
            sa.Column("expiry_bucket", sa.Date(), nullable=False, server_default="1970-01-01")
        )
        batch.drop_constraint("pk_recording_byte_range", type_="primary")
        batch.create_primary_key(
            "pk_recording_byte_range",
            ["project_id", "replay_id", "segment_id", "part", "expiry_bucket"],
        )
    op.execute(
        "UPDATE recording_byte_range SET expiry_bucket = (SELECT r.expiry_bucket FROM replay r "
        "WHERE r.project_id = recording_byte_range.project_id "
        "AND r.replay_id = recording_byte_range.replay_id)"
    )
    with op.batch_alter_table("recording_byte_range", recreate="always") as batch:
        batch.alter_column("expiry_bucket", server_default=None)


def downgrade() -> None:
    """Back to one plain table keyed without the bucket; the replay table goes."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE recording_byte_range RENAME TO recording_byte_range_partitioned")
        op.execute("ALTER INDEX ix_recording_byte_range_expires_at RENAME TO ix_rbr_partitioned")
        op.execute(
            "ALTER TABLE recording_byte_range_partitioned "
            "RENAME CONSTRAINT pk_recording_byte_range TO pk_rbr_partitioned"
        )
        op.create_table(
            "recording_byte_range",
            *_range_columns(),
            sa.PrimaryKeyConstraint(
                "project_id", "replay_id", "segment_id", "part", name="pk_recording_byte_range"
            ),
        )
        op.create_index(
            "ix_recording_byte_range_expires_at",
            "recording_byte_range",
            ["expires_at"],
            postgresql_using="brin",
        )
        op.execute(
            f"INSERT INTO recording_byte_range ({_COLUMNS}) "  # noqa: S608
            f"SELECT {_COLUMNS} FROM recording_byte_range_partitioned ON CONFLICT DO NOTHING"
        )
        op.execute("DROP TABLE recording_byte_range_partitioned CASCADE")
    else:
        with op.batch_alter_table("recording_byte_range", recreate="always") as batch:
            batch.drop_constraint("pk_recording_byte_range", type_="primary")
            batch.create_primary_key(
                "pk_recording_byte_range", ["project_id", "replay_id", "segment_id", "part"]
            )
            batch.drop_column("expiry_bucket")
    op.drop_index("ix_replay_expiry_bucket", table_name="replay")
    op.drop_table("replay")
