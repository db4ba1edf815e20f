"""Alembic migrations for the SQL schema, runnable from code.

``await upgrade(url)`` brings a database to the newest revision (or to
``revision``); ``await current(url)`` says where it is. Both run on the event loop
and the migration itself on SQLAlchemy's greenlet bridge, so nothing blocks.

On PostgreSQL an upgrade holds the advisory lock ``MIGRATION_LOCK`` for its
transaction, so processes that upgrade one database at once take turns. Within one
process, run one upgrade at a time: alembic keeps its context in module globals.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ["HEAD", "MIGRATION_LOCK", "current", "head", "upgrade"]

HEAD = "head"
MIGRATION_LOCK = 0x6561_7365_6C5F_6D67
"""The key of the PostgreSQL advisory lock an upgrade holds ("easel_mg" in ASCII)."""
_HERE = Path(__file__).parent


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return config


def head() -> str:
    """The newest revision id."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


async def upgrade(url: str, revision: str = HEAD) -> None:
    """Migrate the database at ``url`` up to ``revision`` (the newest by default).

    Idempotent. Raises SQLAlchemy's errors if the database can't be reached.
    """

    def run(connection: Connection) -> None:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None`` for an empty database)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()
