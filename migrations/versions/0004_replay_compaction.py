"""Replay compaction: compacted blobs are marked, and the copies they superseded are recorded.

`blob.compacted` tells a blob written by compaction (finished replays, contiguous in segment
order) from one written by a flush. `superseded_range` records each frame's old location after
compaction repointed its row, until the source blob is deleted: a forced overwrite of that replay
zeroes those copies too, and the compliance report counts them as residual copies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("blob") as batch:
        # The server default fills existing rows (all written by flushes), then goes.
        batch.add_column(
            sa.Column("compacted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("blob") as batch:
        batch.alter_column("compacted", server_default=None)
    op.create_table(
        "superseded_range",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.String(32), nullable=False),
        sa.Column("blob_path", sa.String(255), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("stop", sa.BigInteger(), nullable=False),
        sa.Column("compacted_into", sa.String(255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("collected_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_superseded_range")),
    )
    op.create_index(
        "ix_superseded_range_project_id_replay_id",
        "superseded_range",
        ["project_id", "replay_id"],
    )
    op.create_index(op.f("ix_superseded_range_blob_path"), "superseded_range", ["blob_path"])


def downgrade() -> None:
    op.drop_index(op.f("ix_superseded_range_blob_path"), table_name="superseded_range")
    op.drop_index("ix_superseded_range_project_id_replay_id", table_name="superseded_range")
    op.drop_table("superseded_range")
    with op.batch_alter_table("blob") as batch:
        batch.drop_column("compacted")
