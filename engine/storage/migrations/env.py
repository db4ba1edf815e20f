"""Alembic environment for Easel's SQL schema.

Runs in two ways: from :func:`engine.storage.migrations.upgrade` on a connection it
passes in (``config.attributes["connection"]``), or from the ``alembic`` command line
with ``sqlalchemy.url`` set, on a fresh async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from engine.storage.migrations import MIGRATION_LOCK
from engine.storage.sql.schema import METADATA


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Nodes starting together on one database take turns (the revision is
            # read after the lock, so the later ones find nothing left to do); the
            # lock goes with the transaction. SQLite has one process (its data dir's).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_from_url(context.config.get_main_option("sqlalchemy.url") or ""))


main()
