"""SQL backend: SQLAlchemy 2 async on SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from engine.storage.sql.backend import SqlBackend, SqlTable

__all__ = ["SqlBackend", "SqlTable"]
