"""A bounded, per-process cache of records by id, for a database one process owns.

Only correct when every write goes through this process's tables (the embedded
SQLite default): each write invalidates what it touched once it has finished. A
read that raced a write must not put back what it read before the write, so every
table has a *generation*, bumped by each invalidation: a read takes a token first
and :meth:`RecordCache.put` drops the record if the generation moved since.

Everything runs on the event loop (no locks); nothing here raises.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from engine.storage.records import Record

__all__ = ["RecordCache"]


class _Entries:
    __slots__ = ("generation", "records")

    def __init__(self) -> None:
        self.generation = 0
        self.records: OrderedDict[str, Record] = OrderedDict()


class RecordCache:
    """Records by table and id, least recently used evicted past ``size`` per table."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._tables: dict[str, _Entries] = {}

    def _entries(self, table: str) -> _Entries:
        entries = self._tables.get(table)
        if entries is None:
            entries = self._tables[table] = _Entries()
        return entries

    def get(self, table: str, record_id: str) -> Record | None:
        """The cached record, or ``None`` on a miss."""
        records = self._entries(table).records
        record = records.get(record_id)
        if record is not None:
            records.move_to_end(record_id)
        return record

    def token(self, table: str) -> int:
        """Take before reading the database; hand to :meth:`put` with what was read."""
        return self._entries(table).generation

    def put(self, table: str, record: Record, token: int) -> None:
        """Keep ``record`` unless ``table`` was written since ``token`` was taken."""
        entries = self._entries(table)
        if entries.generation != token:
            return
        entries.records[record.id] = record
        entries.records.move_to_end(record.id)
        if len(entries.records) > self._size:
            entries.records.popitem(last=False)

    def invalidate(self, table: str, record_ids: Iterable[str]) -> None:
        """Forget these records (after a write to them, whatever its outcome)."""
        entries = self._entries(table)
        entries.generation += 1
        for record_id in record_ids:
            entries.records.pop(record_id, None)

    def clear(self, table: str) -> None:
        """Forget every record of ``table`` (rows a cascade deleted)."""
        entries = self._entries(table)
        entries.generation += 1
        entries.records.clear()
