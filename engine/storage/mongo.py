"""The MongoDB backend on PyMongo's ``AsyncMongoClient``.

One collection per table; a record's ``id`` is the document's ``_id``. Unique and
secondary indexes come from the table specs and are ensured by :meth:`MongoBackend.start`,
which also renames the fields the specs list as renamed in existing documents.
Every call goes through :meth:`MongoBackend.unit`, which maps driver errors to engine
errors; the client's ``timeoutMS`` bounds each operation, so none hangs.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from bson.errors import BSONError
from prometheus_client import CollectorRegistry
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.monitoring import (
    ConnectionCheckedInEvent,
    ConnectionCheckedOutEvent,
    ConnectionPoolListener,
)

from engine.errors import Conflict, Invalid, NotFound, Unavailable
from engine.storage.metrics import PoolStatus, StoreMetrics
from engine.storage.records import Page, Record
from engine.storage.table import TableSpec, Where, can_exist

__all__ = ["MongoBackend", "MongoTable"]

R = TypeVar("R", bound=Record)


class _PoolCounter(ConnectionPoolListener):
    """Counts checked-out connections from the driver's pool events (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checked_out = 0
        self.observe_wait: Callable[[float], None] = lambda _seconds: None

    def connection_checked_out(self, event: ConnectionCheckedOutEvent) -> None:
        with self._lock:
            self.checked_out += 1
        if event.duration is not None:
            self.observe_wait(event.duration)

    def connection_checked_in(self, event: ConnectionCheckedInEvent) -> None:
        with self._lock:
            self.checked_out -= 1

    def pool_created(self, event: Any) -> None: ...
    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_created(self, event: Any) -> None: ...
    def connection_ready(self, event: Any) -> None: ...
    def connection_closed(self, event: Any) -> None: ...
    def connection_check_out_started(self, event: Any) -> None: ...
    def connection_check_out_failed(self, event: Any) -> None: ...


class MongoBackend:
    """A MongoDB database reached through one ``AsyncMongoClient``; runs on the loop."""

    def __init__(
        self,
        uri: str,
        database: str,
        registry: CollectorRegistry,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self._pool = _PoolCounter()
        self._pool_size = pool_size
        ms = int(timeout * 1000)
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri,
            tz_aware=True,
            maxPoolSize=pool_size,
            timeoutMS=ms,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            event_listeners=[self._pool],
        )
        self._db = self._client[database]
        self._specs: dict[str, TableSpec[Any]] = {}
        self._closed = False
        self.metrics = StoreMetrics(registry, self.pool_status)
        self._pool.observe_wait = self.metrics.wait_seconds.observe

    def pool_status(self) -> PoolStatus:
        """Pool size and connections in use (from driver events; any thread)."""
        return PoolStatus(self._pool_size, self._pool.checked_out, 0)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        """Map driver errors: duplicate key → ``Conflict``, a value BSON can't hold →
        ``Invalid``, anything else → ``Unavailable``."""
        try:
            yield
        except DuplicateKeyError:
            raise Conflict("a record with these unique fields already exists") from None
        except (BSONError, OverflowError, UnicodeEncodeError):
            raise Invalid("the database refused a value") from None
        except PyMongoError as exc:
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    def table(self, spec: TableSpec[R]) -> MongoTable[R]:
        """The collection for ``spec`` (remembered so ``start`` indexes it)."""
        self._specs[spec.name] = spec
        return MongoTable(self, spec)

    def collection(self, name: str) -> Any:
        """The raw collection called ``name``."""
        return self._db[name]

    async def start(self) -> None:
        """Rename old fields and create the indexes every known table needs.

        Idempotent. Raises ``Unavailable``.
        """
        async with self.unit():
            for spec in self._specs.values():
                coll = self._db[spec.name]
                for old, new in spec.renamed:
                    await coll.update_many({old: {"$exists": True}}, {"$rename": {old: new}})
                existing = await coll.index_information()
                for fields in spec.retired:
                    name = "_".join(f"{f}_1" for f in fields)
                    if name in existing:
                        await coll.drop_index(name)
                for fields in spec.unique:
                    await coll.create_index(
                        [(f, ASCENDING) for f in fields], unique=True, **_only_set(spec, fields)
                    )
                for fields in (*spec.indexes, spec.order):
                    await coll.create_index([(f, ASCENDING) for f in fields])

    async def ping(self) -> None:
        """Send ``ping``. Raises ``Unavailable``."""
        async with self.unit():
            await self._client.admin.command("ping")

    async def close(self) -> None:
        """Close the client and remove the metrics. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        self.metrics.unregister()

    async def delete_tree(self, spec: TableSpec[Any], where: Where) -> int:
        """Delete matching documents and, first, their children (recursively)."""
        coll = self._db[spec.name]
        if spec.children:
            ids = [doc["_id"] async for doc in coll.find(dict(where), {"_id": 1})]
            for child in spec.children:
                child_spec = self._specs.get(child.table)
                if child_spec is not None and ids:
                    await self.delete_tree(child_spec, {child.field: {"$in": ids}})
        result = await coll.delete_many(dict(where))
        return int(result.deleted_count)


def _only_set(spec: TableSpec[Any], fields: tuple[str, ...]) -> dict[str, Any]:
    # A unique field that may be null (a job's idempotency key) is unique only where
    # set, as in SQL: MongoDB would count every null as the same value (which is what
    # ``null_is_value`` fields want).
    nullable = [
        f
        for f in fields
        if spec.record.model_fields[f].default is None and f not in spec.null_is_value
    ]
    if not nullable:
        return {}
    return {"partialFilterExpression": {f: {"$type": "string"} for f in nullable}}


class MongoTable(Generic[R]):
    """A :class:`~engine.storage.table.Table` on one MongoDB collection."""

    def __init__(self, backend: MongoBackend, spec: TableSpec[R]) -> None:
        self._backend = backend
        self._spec = spec
        self._coll = backend.collection(spec.name)

    @property
    def spec(self) -> TableSpec[R]:
        return self._spec

    def _record(self, doc: dict[str, Any]) -> R:
        doc["id"] = doc.pop("_id")
        return self._spec.record.model_validate(doc)

    def _missing(self, record_id: str) -> NotFound:
        return NotFound(f"{self._spec.name}/{record_id} not found")

    async def insert(self, record: R) -> None:
        doc = record.model_dump()
        doc["_id"] = doc.pop("id")
        async with self._backend.unit():
            await self._coll.insert_one(doc)

    async def get(self, record_id: str) -> R:
        if not can_exist(record_id):
            raise self._missing(record_id)
        async with self._backend.unit():
            doc = await self._coll.find_one({"_id": record_id})
        if doc is None:
            raise self._missing(record_id)
        return self._record(doc)

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
        query: dict[str, Any] = {_key(field): value for field, value in where.items()}
        fields = [_key(f) for f in order or self._spec.order]
        if below is not None:
            query = {"$and": [query, _before(fields, below)]}
        by = [(f, DESCENDING if descending else ASCENDING) for f in fields]
        async with self._backend.unit():
            docs = (
                await self._coll.find(query).sort(by).skip(offset).limit(limit).to_list()
                if limit > 0  # a limit of 0 is no limit to MongoDB
                else []
            )
            total = await self._coll.count_documents(query) if count else offset + len(docs)
        return Page(tuple(self._record(doc) for doc in docs), total, limit, offset)

    async def update(self, record_id: str, changes: Where, *, expect: Where | None = None) -> R:
        if not can_exist(record_id):
            raise self._missing(record_id)
        query = {"_id": record_id, **(expect or {})}
        async with self._backend.unit():
            doc = await self._coll.find_one_and_update(
                query, {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            await self.get(record_id)
            raise Conflict(f"{self._spec.name}/{record_id} is not in the expected state")
        return self._record(doc)

    async def update_each(self, changes: Mapping[str, Where]) -> None:
        ops = [UpdateOne({"_id": key}, {"$set": dict(values)}) for key, values in changes.items()]
        if ops:
            async with self._backend.unit():
                await self._coll.bulk_write(ops)

    async def update_where(self, where: Where, changes: Where) -> int:
        async with self._backend.unit():
            result = await self._coll.update_many(dict(where), {"$set": dict(changes)})
        return int(result.modified_count)

    async def delete(self, record_id: str) -> None:
        if not can_exist(record_id):
            raise self._missing(record_id)
        async with self._backend.unit():
            deleted = await self._backend.delete_tree(self._spec, {"_id": record_id})
        if deleted == 0:
            raise self._missing(record_id)


def _key(field: str) -> str:
    return "_id" if field == "id" else field


def _before(fields: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    # (a, b, c) < (x, y, z): a < x, or a == x and (b, c) < (y, z); a null field is
    # never below anything (``$lt`` compares within a type only)
    first, value = fields[0], values[0]
    if len(fields) == 1:
        return {first: {"$lt": value}}
    return {
        "$or": [
            {first: {"$lt": value}},
            {"$and": [{first: value}, _before(fields[1:], values[1:])]},
        ]
    }
