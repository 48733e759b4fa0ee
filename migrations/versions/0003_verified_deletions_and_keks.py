"""Verified deletions (rows left when marked done, when, the earlier deletion) and KEKs in use.

`deletion` gains `verified_rows_left` and `verified_at` (set by the transaction that marks it
done after finding no key-bearing row of its target) and `previous_deletion_id` (a request for
a replay an earlier deletion already took). `kek_in_use` lists every KEK the catalog's rows and
secrets need (with a fingerprint of the local key file's version, so a replaced key file is told
apart from tampering), so each command can check at start that the configured KMS holds them; it
is filled here from the rows already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deletion") as batch:
        batch.add_column(sa.Column("verified_rows_left", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("verified_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("previous_deletion_id", sa.String(32), nullable=True))
    op.create_table(
        "kek_in_use",
        sa.Column("kek", sa.String(512), nullable=False),
        sa.Column("first_used_at", TIMESTAMP, nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("kek", name=op.f("pk_kek_in_use")),
    )
    op.execute(
        "INSERT INTO kek_in_use (kek, first_used_at) "
        "SELECT kek, min(created_at) FROM ("
        "SELECT kek, created_at FROM recording_byte_range "
        "UNION ALL SELECT kek, created_at FROM catalog_secret) AS used GROUP BY kek"
    )


def downgrade() -> None:
    op.drop_table("kek_in_use")
    with op.batch_alter_table("deletion") as batch:
        batch.drop_column("previous_deletion_id")
        batch.drop_column("verified_at")
        batch.drop_column("verified_rows_left")
