"""The SQL backend: SQLAlchemy 2 async over aiosqlite (embedded) or asyncpg.

Every operation runs in one *unit of work* (:meth:`SqlBackend.unit`): a connection
from the pool and a transaction, always returned to the pool, whatever happens
inside (an error, a cancelled task, a timeout). Database errors become engine
errors there, in one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Row, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import QueuePool

from engine.errors import Conflict, NotFound, Unavailable
from engine.storage.metrics import PoolStatus, StoreMetrics
from engine.storage.records import Page, Record
from engine.storage.sql.schema import METADATA
from engine.storage.table import TableSpec, Where

__all__ = ["SqlBackend", "SqlTable"]

R = TypeVar("R", bound=Record)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Runs on every new pool connection: WAL for concurrent readers, foreign keys
    # for cascades, and a busy timeout so a writer waits instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlBackend:
    """A SQLAlchemy async engine with a bounded pool and per-operation timeouts.

    Runs on the event loop. ``timeout`` bounds every unit of work, including the
    wait for a pooled connection: past it the operation raises ``Unavailable``.
    """

    def __init__(
        self,
        url: str,
        registry: CollectorRegistry,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._timeout = timeout
        dialect = make_url(url).get_backend_name()
        connect_args: dict[str, Any] = {}
        if dialect == "postgresql":
            connect_args = {"timeout": timeout, "command_timeout": timeout}
        self._engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeout,
            # No ping per checkout (it costs a round trip on every operation, ~40%
            # of a get): a disconnect error invalidates the whole pool instead, so
            # after a database restart one failed operation per stale connection
            # at most, then fresh connections.
            pool_pre_ping=False,
            pool_recycle=1800,
            connect_args=connect_args,
        )
        if dialect == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        self._closed = False
        self.metrics = StoreMetrics(registry, self.pool_status)

    def pool_status(self) -> PoolStatus:
        """The pool right now (safe from any thread: it only reads counters)."""
        pool = self._engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(pool.size(), pool.checkedout(), max(0, pool.overflow()))
        return PoolStatus(0, 0, 0)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: a pooled connection in a transaction, always given back.

        Commits when the block ends normally and rolls back when it raises.
        Raises ``Unavailable`` when the database can't be reached or the unit takes
        longer than the timeout, ``Conflict`` on a unique violation and
        ``NotFound`` when a referenced parent row is missing.
        """
        try:
            async with asyncio.timeout(self._timeout):
                start = time.perf_counter()
                async with self._engine.connect() as conn:
                    self.metrics.wait_seconds.observe(time.perf_counter() - start)
                    async with conn.begin():
                        yield conn
        except IntegrityError as exc:
            if "foreign key" in str(exc.orig).lower():
                raise NotFound("referenced record does not exist") from None
            raise Conflict("a record with these unique fields already exists") from None
        except ProgrammingError:
            raise
        except (DBAPIError, PoolTimeout, OSError, TimeoutError) as exc:
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    def table(self, spec: TableSpec[R]) -> SqlTable[R]:
        """The SQL table for ``spec``."""
        return SqlTable(self, spec)

    async def ping(self) -> None:
        """Run ``SELECT 1``. Raises ``Unavailable``."""
        async with self.unit() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection and remove the metrics. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._engine.dispose()
        self.metrics.unregister()


class SqlTable(Generic[R]):
    """A :class:`~engine.storage.table.Table` on one SQL table; one unit of work per call."""

    def __init__(self, backend: SqlBackend, spec: TableSpec[R]) -> None:
        self._backend = backend
        self._spec = spec
        self._table = METADATA.tables[spec.name]

    @property
    def spec(self) -> TableSpec[R]:
        return self._spec

    def _record(self, row: Row[Any]) -> R:
        return self._spec.record.model_validate(dict(row._mapping))

    def _where(self, where: Where) -> list[Any]:
        return [self._table.c[name] == value for name, value in where.items()]

    async def insert(self, record: R) -> None:
        async with self._backend.unit() as conn:
            await conn.execute(self._table.insert().values(record.model_dump()))

    async def get(self, record_id: str) -> R:
        async with self._backend.unit() as conn:
            row = (
                await conn.execute(select(self._table).where(self._table.c.id == record_id))
            ).first()
        if row is None:
            raise NotFound(f"{self._spec.name}/{record_id} not found")
        return self._record(row)

    async def find(self, where: Where, *, limit: int, offset: int) -> Page[R]:
        conditions = self._where(where)
        order = [self._table.c[name] for name in self._spec.order]
        query = select(self._table).where(*conditions).order_by(*order).limit(limit).offset(offset)
        async with self._backend.unit() as conn:
            rows = (await conn.execute(query)).all()
            total = (
                await conn.execute(select(func.count()).select_from(self._table).where(*conditions))
            ).scalar_one()
        return Page(tuple(self._record(row) for row in rows), total, limit, offset)

    async def update(self, record_id: str, changes: Where, *, expect: Where | None = None) -> R:
        query = (
            self._table.update()
            .where(self._table.c.id == record_id, *self._where(expect or {}))
            .values(dict(changes))
            .returning(*self._table.c)
        )
        async with self._backend.unit() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            await self.get(record_id)
            raise Conflict(f"{self._spec.name}/{record_id} is not in the expected state")
        return self._record(row)

    async def update_each(self, changes: Mapping[str, Where]) -> None:
        async with self._backend.unit() as conn:
            for record_id, values in changes.items():
                await conn.execute(
                    self._table.update().where(self._table.c.id == record_id).values(dict(values))
                )

    async def delete(self, record_id: str) -> None:
        # Children go with their parent through ON DELETE CASCADE.
        async with self._backend.unit() as conn:
            result = await conn.execute(self._table.delete().where(self._table.c.id == record_id))
        if result.rowcount == 0:
            raise NotFound(f"{self._spec.name}/{record_id} not found")
