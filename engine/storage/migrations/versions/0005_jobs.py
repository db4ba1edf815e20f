"""Durable ComfyUI jobs and tagged servers.

Jobs get their graph (``prompt``), priority, attempts, progress, node errors, the
current attempt's ``prompt_id``, an in-flight ``slot`` (unique: per-server caps hold
across engine nodes), a lease (owner and expiry), timestamps and a ``version`` for
conditional updates; ``idempotency_key`` is unique. Servers get ``tags``. Existing
rows keep their values and take the defaults. Batch operations, so SQLite (which
recreates the table) and PostgreSQL (which alters it) both work.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("comfy_servers") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("prompt", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3")
        )
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("node_errors", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("prompt_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("slot", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires", _STAMP, nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("dispatched_at", _STAMP, nullable=True))
        batch.add_column(sa.Column("started_at", _STAMP, nullable=True))
        batch.add_column(sa.Column("finished_at", _STAMP, nullable=True))
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_unique_constraint("uq_jobs_idempotency_key", ["idempotency_key"])
        batch.create_unique_constraint("uq_jobs_slot", ["slot"])
        batch.create_index("ix_jobs_lease_owner", ["lease_owner"])
        batch.create_index("ix_jobs_priority_created_at_id", ["priority", "created_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_priority_created_at_id")
        batch.drop_index("ix_jobs_lease_owner")
        batch.drop_constraint("uq_jobs_slot", type_="unique")
        batch.drop_constraint("uq_jobs_idempotency_key", type_="unique")
        for column in (
            "version",
            "finished_at",
            "started_at",
            "dispatched_at",
            "cancel_requested",
            "lease_expires",
            "lease_owner",
            "slot",
            "prompt_id",
            "progress",
            "attempts",
            "node_errors",
            "idempotency_key",
            "max_attempts",
            "priority",
            "prompt",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("comfy_servers") as batch:
        batch.drop_column("tags")
