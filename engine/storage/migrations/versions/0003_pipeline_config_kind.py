"""Pipeline configs take the domain's fields: ``kind``, ``max_batch``, ``options``.

Renames ``pipeline`` to ``kind`` and ``params`` to ``options`` and adds a nullable
``max_batch`` (``NULL``: the kind's default), keeping every row. Batch operations, so
SQLite (which recreates the table) and PostgreSQL (which alters it) both work.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_configs") as batch:
        batch.alter_column("pipeline", new_column_name="kind")
        batch.alter_column("params", new_column_name="options")
        batch.add_column(sa.Column("max_batch", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_configs") as batch:
        batch.drop_column("max_batch")
        batch.alter_column("options", new_column_name="params")
        batch.alter_column("kind", new_column_name="pipeline")
