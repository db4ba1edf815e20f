"""The storage contract every backend implements: tables of records, and a backend.

Repositories (``repositories.py``) are written once against these two protocols; the
SQL backend (``sql/``) and the MongoDB backend (``mongo.py``) supply them. Every
method runs on the event loop and never blocks it. Every method may raise
``Unavailable`` when the database can't be reached within the backend's timeout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from engine.storage.metrics import PoolStatus, StoreMetrics
from engine.storage.records import Page, Record

__all__ = ["Backend", "Child", "Table", "TableSpec", "Where", "can_exist"]

R = TypeVar("R", bound=Record)

Where = Mapping[str, Any]
"""Equality filters: ``{field: value}``; every pair must match."""


def can_exist(record_id: str) -> bool:
    """Whether a record could have this id: ids are ASCII without NUL (``new_id``).

    Tables answer ``NotFound`` for any other id before asking the database, which
    would refuse it in its own way (PostgreSQL can't even compare a NUL).
    """
    return record_id.isascii() and "\x00" not in record_id


@dataclasses.dataclass(frozen=True, slots=True)
class Child:
    """A table whose rows are deleted with their parent: ``table.field == parent.id``."""

    table: str
    field: str


@dataclasses.dataclass(frozen=True, slots=True)
class TableSpec(Generic[R]):
    """What a backend needs to know about one table, independent of the backend."""

    name: str
    record: type[R]
    order: tuple[str, ...] = ("created_at", "id")
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    children: tuple[Child, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    """Fields renamed since records were first stored, ``(old, new)``: schemaless
    backends rename them in existing records at start (SQL has its migrations)."""
    null_is_value: tuple[str, ...] = ()
    """Nullable fields whose null counts as one value in ``unique`` (an owner: records
    of no owner are unique among themselves); any other nullable field is unique only
    where set."""
    retired: tuple[tuple[str, ...], ...] = ()
    """Unique field sets of earlier versions: schemaless backends drop their indexes
    at start (SQL has its migrations)."""


class Table(Protocol[R]):
    """One table (or collection) of records of one type."""

    @property
    def spec(self) -> TableSpec[R]:
        """What this table holds."""

    async def insert(self, record: R) -> None:
        """Store a new record. Raises ``Conflict`` when a unique field is taken."""

    async def get(self, record_id: str) -> R:
        """The record with this id. Raises ``NotFound``."""

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
        """A page of the records matching ``where``, in the table's order (or by the
        fields of ``order``), ascending unless ``descending``.

        ``below``: only records whose ordering fields, compared as a tuple, are less
        than these values (a keyset cursor: the last record of a descending page is
        the ``below`` of the next; a null field is never below anything). ``total``
        counts what ``where`` and ``below`` match (``count=False``: not counted, one
        query less; ``total`` is then the offset plus the page's length); ``limit`` 0
        only counts.
        """

    async def update(self, record_id: str, changes: Where, *, expect: Where | None = None) -> R:
        """Set fields of one record and return it, atomically.

        With ``expect``, only if the record's fields match it now. Raises
        ``NotFound``; ``Conflict`` if ``expect`` does not match or a unique field
        is taken.
        """

    async def update_each(self, changes: Mapping[str, Where]) -> None:
        """Set fields of several records (``{id: changes}``) in one unit of work."""

    async def update_where(self, where: Where, changes: Where) -> int:
        """Set fields of every record matching ``where`` (a ``None`` value matches a
        null or missing field) in one unit of work; returns how many it changed."""

    async def delete(self, record_id: str) -> None:
        """Delete a record and, recursively, its children. Raises ``NotFound``."""


class Backend(Protocol):
    """A database behind tables: opens them, reports health, closes."""

    metrics: StoreMetrics

    def pool_status(self) -> PoolStatus:
        """The connection pool right now (any thread: it only reads counters)."""

    def table(self, spec: TableSpec[R]) -> Table[R]:
        """The table described by ``spec`` (no I/O)."""

    async def ping(self) -> None:
        """Return when the database answers. Raises ``Unavailable``."""

    async def close(self) -> None:
        """Release every connection. Safe to call twice."""
