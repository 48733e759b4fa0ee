"""An index on replay (project_id, expiry_bucket, replay_id) for the shred's replay walk.

A project or user deletion on PostgreSQL walks the deleted replays in this order, one batch
per chunk, so that each chunk's rows come from few partitions and no chunk revisits the index
entries of rows an earlier chunk deleted (see vault_store.catalog.partitions).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_replay_project_id_expiry_bucket_replay_id",
        "replay",
        ["project_id", "expiry_bucket", "replay_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_replay_project_id_expiry_bucket_replay_id", table_name="replay")
