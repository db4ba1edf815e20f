"""The SQL backend: SQLAlchemy 2 async over aiosqlite (embedded) or asyncpg.

Every write and list runs in one *unit of work* (:meth:`SqlBackend.unit`): a
connection from the pool and a transaction, always returned to the pool, whatever
happens inside (an error, a cancelled task, a timeout). A read by id is a single
statement (:meth:`SqlBackend.first`) on the same guarded connection, without the
transaction. Database errors become engine errors there, in one place.

On SQLite, writing units take turns on an asyncio lock. SQLite lets one writer in at
a time anyway, and a writer that finds another makes its connection's thread sleep
and retry (the busy handler backs off up to 100 ms a try): with a few jobs writing at
once that sleeping, not the work, set the pace. Readers (lists, reads by id) never
wait for the lock: WAL lets them read beside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Select, Table, and_, bindparam, event, func, or_, select, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import QueuePool

from engine.errors import Conflict, Invalid, NotFound, Unavailable
from engine.storage.metrics import PoolStatus, StoreMetrics
from engine.storage.records import Page, Record
from engine.storage.sql.cache import RecordCache
from engine.storage.sql.schema import METADATA
from engine.storage.table import TableSpec, Where, can_exist

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
    ``cache_size`` > 0 keeps up to that many records per table in memory
    (:class:`~engine.storage.sql.cache.RecordCache`): only for a database that no
    other process writes.
    """

    def __init__(
        self,
        url: str,
        registry: CollectorRegistry,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 5.0,
        cache_size: int = 0,
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
        self._sqlite = dialect == "sqlite"
        self._writer = asyncio.Lock()
        """Held by the writing unit of work on SQLite (see the module's docstring)."""
        self._reads: dict[Select[Any], _Read] = {}
        if self._sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        self.cache = RecordCache(cache_size) if cache_size > 0 else None
        """Records by id, only when this process owns the database (see ``cache.py``)."""
        self._closed = False
        self.metrics = StoreMetrics(registry, self.pool_status)

    def pool_status(self) -> PoolStatus:
        """The pool right now (safe from any thread: it only reads counters)."""
        pool = self._engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(pool.size(), pool.checkedout(), max(0, pool.overflow()))
        return PoolStatus(0, 0, 0)

    @asynccontextmanager
    async def unit(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """One unit of work: a pooled connection in a transaction, always given back.

        Commits when the block ends normally and rolls back when it raises.
        ``write=False`` promises the block only reads (on SQLite it then does not
        wait for the writer before it).
        Raises ``Unavailable`` when the database can't be reached or the unit takes
        longer than the timeout, ``Conflict`` on a unique violation and
        ``NotFound`` when a referenced parent row is missing, ``Invalid`` when the
        database refuses a value (a PostgreSQL data exception, SQLSTATE class 22).
        """
        async with self._connection(write=write) as conn, conn.begin():
            yield conn

    async def first(
        self, query: Select[Any], params: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """The first row of a read-only ``query`` (bound with ``params``), or ``None``.

        One statement, so no explicit transaction. On SQLite the statement is
        compiled once per query and runs in one hop to the connection's thread;
        elsewhere through SQLAlchemy. Raises ``Unavailable`` like :meth:`unit`.
        """
        async with self._connection() as conn:
            if self._sqlite:
                read = self._compiled(query)
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None  # a checked-out connection always has one
                rows = await driver.execute_fetchall(read.sql, read.bind(params))
                return read.row(rows[0]) if rows else None
            row = (await conn.execute(query, dict(params))).first()
            return None if row is None else row._mapping

    @asynccontextmanager
    async def _turn(self, write: bool) -> AsyncIterator[None]:
        """The writer's turn, for a writing unit on SQLite; nothing otherwise."""
        if not (write and self._sqlite):
            yield
            return
        async with self._writer:
            yield

    def _compiled(self, query: Select[Any]) -> _Read:
        read = self._reads.get(query)
        if read is None:
            read = self._reads[query] = _Read(query, self._engine.dialect)
        return read

    @asynccontextmanager
    async def _connection(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        # Bounds the whole block (pool and writer waits included) and maps database
        # errors to engine errors, for units of work and single reads alike.
        try:
            async with asyncio.timeout(self._timeout), self._turn(write):
                start = time.perf_counter()
                async with self._engine.connect() as conn:
                    self.metrics.wait_seconds.observe(time.perf_counter() - start)
                    yield conn
        except IntegrityError as exc:
            if "foreign key" in str(exc.orig).lower():
                raise NotFound("referenced record does not exist") from None
            raise Conflict("a record with these unique fields already exists") from None
        except (DataError, sqlite3.DataError, UnicodeEncodeError, OverflowError):
            raise Invalid("the database refused a value") from None
        except (ProgrammingError, sqlite3.ProgrammingError):
            # A statement the database can't run: a bug here, not an outage.
            raise
        except DBAPIError as exc:
            # asyncpg's errors reach SQLAlchemy as plain DBAPIError: the SQLSTATE
            # tells a refused value (class 22, e.g. a NUL or NaN) from an outage.
            if str(getattr(exc.orig, "sqlstate", "")).startswith("22"):
                raise Invalid("the database refused a value") from None
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
        except (PoolTimeout, OSError, TimeoutError, sqlite3.Error) as exc:
            # sqlite3 errors come unwrapped from the driver calls of ``first``.
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    def table(self, spec: TableSpec[R]) -> SqlTable[R]:
        """The SQL table for ``spec``."""
        return SqlTable(self, spec)

    async def ping(self) -> None:
        """Run ``SELECT 1``. Raises ``Unavailable``."""
        async with self.unit(write=False) as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection and remove the metrics. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._engine.dispose()
        self.metrics.unregister()


def _cascades(table: Table) -> tuple[str, ...]:
    """Every table whose rows ``ON DELETE CASCADE`` removes with ``table``'s, recursively."""
    found: list[str] = []
    pending = [table]
    while pending:
        parent = pending.pop()
        for child in METADATA.sorted_tables:
            if child.name not in found and any(
                fk.ondelete == "CASCADE" and fk.column.table is parent for fk in child.foreign_keys
            ):
                found.append(child.name)
                pending.append(child)
    return tuple(found)


class _Read:
    """A ``select`` compiled once for the driver: its SQL, how to bind, how to read rows."""

    def __init__(self, query: Select[Any], dialect: Dialect) -> None:
        compiled = query.compile(dialect=dialect)
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        self._keys = tuple(query.selected_columns.keys())
        self._processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in query.selected_columns
        )

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self._names)

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        return {
            key: value if process is None else process(value)
            for key, value, process in zip(self._keys, values, self._processors, strict=True)
        }


class SqlTable(Generic[R]):
    """A :class:`~engine.storage.table.Table` on one SQL table; one unit of work per call.

    ``get`` reads through the backend's record cache when it has one; every write
    invalidates what it touched (and, for deletes, the tables the cascade reaches).
    """

    def __init__(self, backend: SqlBackend, spec: TableSpec[R]) -> None:
        self._backend = backend
        self._spec = spec
        self._table = METADATA.tables[spec.name]
        # Built once: each get binds only the id.
        self._by_id = select(self._table).where(self._table.c.id == bindparam("record_id"))
        self._cascades = _cascades(self._table)

    @property
    def spec(self) -> TableSpec[R]:
        return self._spec

    def _record(self, fields: Mapping[Any, Any]) -> R:
        return self._spec.record.model_validate(dict(fields))

    def _where(self, where: Where) -> list[Any]:
        return [self._table.c[name] == value for name, value in where.items()]

    async def insert(self, record: R) -> None:
        async with self._backend.unit() as conn:
            await conn.execute(self._table.insert().values(record.model_dump()))

    async def get(self, record_id: str) -> R:
        cache = self._backend.cache
        if cache is None:
            return await self._read(record_id)
        # Records are frozen but their dicts are not: the cache keeps its own deep
        # copy and hands out copies, so no caller can change what the next one reads.
        cached = cache.get(self._spec.name, record_id)
        if isinstance(cached, self._spec.record):
            return cached.model_copy(deep=True)
        token = cache.token(self._spec.name)
        record = await self._read(record_id)
        cache.put(self._spec.name, record.model_copy(deep=True), token)
        return record

    def _missing(self, record_id: str) -> NotFound:
        return NotFound(f"{self._spec.name}/{record_id} not found")

    async def _read(self, record_id: str) -> R:
        if not can_exist(record_id):
            raise self._missing(record_id)
        row = await self._backend.first(self._by_id, {"record_id": record_id})
        if row is None:
            raise self._missing(record_id)
        return self._record(row)

    @contextmanager
    def _writing(
        self, record_ids: Iterable[str] | None, *, cascade: bool = False
    ) -> Iterator[None]:
        # Invalidate before the write, so no read after its commit finds the old
        # record still cached while the unit of work winds down, and again once it
        # is over (its connection given back), whether it succeeded, failed or was
        # cancelled, so nothing read meanwhile stays. ``None``: any record.
        ids = None if record_ids is None else tuple(record_ids)
        self._invalidate(ids, cascade=cascade)
        try:
            yield
        finally:
            self._invalidate(ids, cascade=cascade)

    def _invalidate(self, record_ids: tuple[str, ...] | None, *, cascade: bool) -> None:
        if (cache := self._backend.cache) is not None:
            if record_ids is None:
                cache.clear(self._spec.name)
            else:
                cache.invalidate(self._spec.name, record_ids)
            for table in self._cascades if cascade else ():
                cache.clear(table)

    async def find(
        self,
        where: Where,
        *,
        limit: int,
        offset: int,
        order: tuple[str, ...] | None = None,
        below: tuple[Any, ...] | None = None,
        descending: bool = False,
        count: bool = True,
    ) -> Page[R]:
        conditions = self._where(where)
        columns = [self._table.c[name] for name in order or self._spec.order]
        if below is not None:
            conditions.append(_before(columns, below))
        by = [column.desc() if descending else column for column in columns]
        query = select(self._table).where(*conditions).order_by(*by).limit(limit).offset(offset)
        async with self._backend.unit(write=False) as conn:
            rows = (await conn.execute(query)).all() if limit > 0 else []
            if count:
                counting = select(func.count()).select_from(self._table).where(*conditions)
                total = (await conn.execute(counting)).scalar_one()
            else:
                total = offset + len(rows)
        return Page(tuple(self._record(row._mapping) for row in rows), total, limit, offset)

    async def update(self, record_id: str, changes: Where, *, expect: Where | None = None) -> R:
        if not can_exist(record_id):
            raise self._missing(record_id)
        query = (
            self._table.update()
            .where(self._table.c.id == record_id, *self._where(expect or {}))
            .values(dict(changes))
            .returning(*self._table.c)
        )
        with self._writing((record_id,)):
            async with self._backend.unit() as conn:
                row = (await conn.execute(query)).first()
        if row is None:
            await self.get(record_id)
            raise Conflict(f"{self._spec.name}/{record_id} is not in the expected state")
        return self._record(row._mapping)

    async def update_each(self, changes: Mapping[str, Where]) -> None:
        with self._writing(changes):
            async with self._backend.unit() as conn:
                for record_id, values in changes.items():
                    await conn.execute(
                        self._table.update()
                        .where(self._table.c.id == record_id)
                        .values(dict(values))
                    )

    async def update_where(self, where: Where, changes: Where) -> int:
        query = self._table.update().where(*self._where(where)).values(dict(changes))
        with self._writing(None):
            async with self._backend.unit() as conn:
                result = await conn.execute(query)
        return int(result.rowcount)

    async def delete(self, record_id: str) -> None:
        # Children go with their parent through ON DELETE CASCADE.
        if not can_exist(record_id):
            raise self._missing(record_id)
        with self._writing((record_id,), cascade=True):
            async with self._backend.unit() as conn:
                query = self._table.delete().where(self._table.c.id == record_id)
                result = await conn.execute(query)
        if result.rowcount == 0:
            raise self._missing(record_id)


def _before(columns: Sequence[Any], values: tuple[Any, ...]) -> Any:
    # (a, b, c) < (x, y, z), spelled out rather than as a row comparison so that every
    # backend uses the ordering index the same way; a null column is never below
    first, value = columns[0], values[0]
    if len(columns) == 1:
        return first < value
    return or_(first < value, and_(first == value, _before(columns[1:], values[1:])))
