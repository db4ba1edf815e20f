"""Roles and owners: ``api_keys.role``; ``owner`` on sessions, projects and media.

Keys stored before roles existed could do everything, so they become ``admin``.
Records stored before owners existed have none (``NULL``): only admin keys see them.
Batch operations, so SQLite (which recreates the table) and PostgreSQL both work.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OWNED = ("sessions", "projects", "media")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("role", server_default=None)
    for table in _OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
            batch.create_index(f"ix_{table}_owner", ["owner"])


def downgrade() -> None:
    for table in _OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_owner")
            batch.drop_column("owner")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("role")
