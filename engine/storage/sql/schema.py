"""The SQL schema as SQLAlchemy Core tables: what the queries use.

Migrations (``engine/storage/migrations/versions``) build the same schema step by
step; a test checks that the newest migration and these tables agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)

__all__ = ["METADATA"]

METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[str]:
    return Column("id", String(32), primary_key=True)


def _stamps() -> tuple[Column[object], Column[object]]:
    return (
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def _parent(name: str, table: str) -> Column[str]:
    return Column(name, String(32), ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=False)


def _unique_per_owner(table: Table, field: str) -> Index:
    # ``coalesce``: the records of no owner (auth off, stored before owners) are one
    # owner's, unique among themselves. SQLite can't reflect an expression index, so a
    # batch migration that recreates the table must create this one again.
    name = f"uq_{table.name}_owner_{field}"
    return Index(name, func.coalesce(table.c.owner, ""), table.c[field], unique=True)


Table(
    "pipeline_configs",
    METADATA,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(200), nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("max_batch", Integer, nullable=True),
    Column("options", JSON, nullable=False),
    Column("hosting", String(32), nullable=True),
    Column("resources", JSON, nullable=True),
    *_stamps(),
)

Table(
    "sessions",
    METADATA,
    _id(),
    Column("pipeline", String(200), nullable=False, index=True),
    Column("drain", String(32), nullable=False),
    Column("client", String(200), nullable=False),
    Column("params", JSON, nullable=False),
    Column("owner", String(32), nullable=True, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("stats", JSON, nullable=False),
    *_stamps(),
    Column("node_id", String(32), nullable=True),
    Column("end_reason", String(32), nullable=True),
)

Table(
    "comfy_servers",
    METADATA,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("url", String(200), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("tags", JSON, nullable=False),
    *_stamps(),
)

_jobs = Table(
    "jobs",
    METADATA,
    _id(),
    Column("workflow", String(200), nullable=False),
    Column("params", JSON, nullable=False),
    Column("server_id", String(32), nullable=True, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("outputs", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("prompt", JSON, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("node_errors", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("progress", Float, nullable=False),
    Column("prompt_id", String(64), nullable=True),
    Column("slot", String(64), nullable=True, unique=True),
    Column("lease_owner", String(64), nullable=True, index=True),
    Column("lease_expires", DateTime(timezone=True), nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("version", BigInteger, nullable=False),
    *_stamps(),
    Column("owner", String(32), nullable=True, index=True),
    Column("labels", JSON, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True, index=True),
    Column("detail", JSON, nullable=False),
    Column("history", JSON, nullable=False),
    Index(None, "priority", "created_at", "id"),
    Index(None, "owner", "created_at", "id"),
)
_unique_per_owner(_jobs, "idempotency_key")

Table(
    "media",
    METADATA,
    _id(),
    Column("content_type", String(200), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("owner", String(32), nullable=True, index=True),
    *_stamps(),
    Column("blake3", String(71), nullable=True),
    Column("job_id", String(32), nullable=True, index=True),
    Column("expires_at", DateTime(timezone=True), nullable=True, index=True),
    Index(None, "owner", "blake3"),
    Index(None, "owner", "filename"),
)

_projects = Table(
    "projects",
    METADATA,
    _id(),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("owner", String(32), nullable=True, index=True),
    *_stamps(),
)
_unique_per_owner(_projects, "name")

Table(
    "scenes",
    METADATA,
    _id(),
    _parent("project_id", "projects"),
    Column("name", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    *_stamps(),
    Index(None, "project_id", "position"),
)

Table(
    "clips",
    METADATA,
    _id(),
    _parent("project_id", "projects"),
    _parent("scene_id", "scenes"),
    Column("name", String(200), nullable=False),
    Column("start", Float, nullable=False),
    Column("duration", Float, nullable=False),
    Column("media_id", String(32), nullable=True),
    *_stamps(),
    Index(None, "project_id"),
    Index(None, "scene_id", "start"),
)

Table(
    "api_keys",
    METADATA,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    *_stamps(),
)
