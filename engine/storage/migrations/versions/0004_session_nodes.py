"""Sessions record the engine node that opened them and why they were closed for them.

Adds two nullable columns to ``sessions``: ``node_id`` (``NULL`` for sessions stored
before this revision) and ``end_reason`` (``engine_restart`` when a node, starting,
closed the sessions its previous run left open). Batch operations, so SQLite
(which recreates the table) and PostgreSQL (which alters it) both work.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("node_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("node_id")
