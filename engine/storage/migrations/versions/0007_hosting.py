"""Pipeline configs say where their replicas run (``hosting``) and what they ask of it.

Adds two nullable columns to ``pipeline_configs``: ``hosting`` (``thread``, ``loop``,
``process`` or ``ray``; ``NULL``, as in every config stored before this revision,
keeps the kind's default) and ``resources`` (JSON, for Ray placement). Batch
operations, so SQLite (which recreates the table) and PostgreSQL (which alters it)
both work.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_configs") as batch:
        batch.add_column(sa.Column("hosting", sa.String(32), nullable=True))
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_configs") as batch:
        batch.drop_column("resources")
        batch.drop_column("hosting")
