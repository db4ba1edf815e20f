"""What Comfy API v2 needs of jobs and media: labels, retention, progress detail,
history, content hashes.

``jobs.labels`` (a submitter's string labels), ``jobs.expires_at`` (retention),
``jobs.detail`` (the running attempt's node and step counts) and ``jobs.history``
(each change of status, which a reconnecting event stream replays);
``media.blake3`` (``blake3:<hex>``, ``NULL`` for bytes stored before), ``media.job_id``
(the job that produced it) and ``media.expires_at``. Existing jobs get empty labels,
detail and history; the retention sweep gives them a deadline.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_EMPTY = {"labels": "{}", "detail": "{}", "history": "[]"}


def upgrade() -> None:
    with warnings.catch_warnings():
        # SQLite's batch reflects ``jobs`` and can't reflect 0008's expression index;
        # it is created again below
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        _jobs()
    _per_owner_key(create=True)
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("blake3", sa.String(71), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_media_job_id", ["job_id"])
        batch.create_index("ix_media_expires_at", ["expires_at"])
        batch.create_index("ix_media_owner_blake3", ["owner", "blake3"])
        batch.create_index("ix_media_owner_filename", ["owner", "filename"])


def _jobs() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, empty in _EMPTY.items():
            batch.add_column(sa.Column(name, sa.JSON, nullable=False, server_default=empty))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_expires_at", ["expires_at"])
        batch.create_index("ix_jobs_owner_created_at_id", ["owner", "created_at", "id"])
    with op.batch_alter_table("jobs") as batch:
        for name in _EMPTY:
            batch.alter_column(name, server_default=None)


def _per_owner_key(*, create: bool) -> None:
    # SQLite recreates a table in a batch (dropping 0008's expression index, which it
    # can't reflect either); PostgreSQL alters it in place and keeps the index
    if create and op.get_bind().dialect.name == "sqlite":
        op.create_index(
            "uq_jobs_owner_idempotency_key",
            "jobs",
            [sa.text("coalesce(owner, '')"), "idempotency_key"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_index("ix_media_owner_filename")
        batch.drop_index("ix_media_owner_blake3")
        batch.drop_index("ix_media_expires_at")
        batch.drop_index("ix_media_job_id")
        for name in ("expires_at", "job_id", "blake3"):
            batch.drop_column(name)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner_created_at_id")
        batch.drop_index("ix_jobs_expires_at")
        for name in ("expires_at", *_EMPTY):
            batch.drop_column(name)
    _per_owner_key(create=True)
