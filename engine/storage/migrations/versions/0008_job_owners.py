"""Jobs have owners; project names and job idempotency keys are unique per owner.

Adds ``jobs.owner`` (the id of the key that submitted the job; ``NULL`` for jobs
stored before this revision: only admin keys see them). A project name, or a job's
idempotency key, taken by another key no longer conflicts: the global unique
constraints become unique indexes on ``(coalesce(owner, ''), name)`` and
``(coalesce(owner, ''), idempotency_key)``, so records of no owner stay unique among
themselves. The indexes are created after the batch operations: SQLite recreates a
table in a batch and can't reflect an expression index, so a later batch on
``jobs`` or ``projects`` must create them again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PER_OWNER = (("jobs", "idempotency_key"), ("projects", "name"))


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
        batch.create_index("ix_jobs_owner", ["owner"])
    for table, field in _PER_OWNER:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_{field}", type_="unique")
    for table, field in _PER_OWNER:
        op.create_index(
            f"uq_{table}_owner_{field}",
            table,
            [sa.text("coalesce(owner, '')"), field],
            unique=True,
        )


def downgrade() -> None:
    for table, field in _PER_OWNER:
        op.drop_index(f"uq_{table}_owner_{field}", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(f"uq_{table}_{field}", [field])
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner")
        batch.drop_column("owner")
