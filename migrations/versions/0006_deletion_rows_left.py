"""A function that counts a deletion's rows left, so each server session plans it once.

A deletion is done only when a count of its target's rows, in every partition, finds none
(DeletionRepository.finish). At 147 partitions, planning that count took 7.7 ms of its 10 ms,
a quarter of a replay shred. PL/pgSQL keeps the plans of a function's statements for the
session; after five calls PostgreSQL settles on a generic plan (the partitions cannot be pruned
here anyway, the count has no bucket), and a call takes about 1 ms. The count is the same
statement as before, over every partition. PostgreSQL only: SQLite has one table and plans it
in microseconds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# `whole_project`: every row of the project; otherwise the rows of the replays the deletion
# tombstoned (catalog/deletions.py `_target` says the same in SQLAlchemy terms).
CREATE = """
CREATE FUNCTION deletion_rows_left(project bigint, deletion varchar, whole_project boolean)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF whole_project THEN
        RETURN (SELECT count(*) FROM recording_byte_range WHERE project_id = project);
    END IF;
    RETURN (
        SELECT count(*) FROM recording_byte_range
        WHERE project_id = project AND replay_id IN (
            SELECT t.replay_id FROM tombstone t
            WHERE t.deletion_id = deletion AND t.project_id = project
        )
    );
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS deletion_rows_left(bigint, varchar, boolean)")
