"""Repositories for the runtime aggregates, and the base every repository shares.

A repository is written once over a :class:`~engine.storage.table.Table`, so every
backend behaves the same. Every method runs on the event loop, is timed as
``easel_db_query_seconds{operation="<repository>.<method>"}`` and may raise
``Unavailable`` when the database can't be reached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from engine.errors import Conflict, Invalid
from engine.storage.metrics import StoreMetrics
from engine.storage.records import (
    ComfyServer,
    ComfyServerPatch,
    Job,
    JobPatch,
    JobPhase,
    JobStatus,
    NewComfyServer,
    NewJob,
    NewSession,
    Page,
    PipelineConfigPatch,
    PipelineConfigRecord,
    Record,
    SessionPatch,
    SessionRecord,
    SessionStatus,
    new_id,
    now,
)
from engine.storage.table import Table, TableSpec, Where
from engine.types import PipelineConfig
from engine.validation import field_problems, listing

__all__ = [
    "COMFY_SERVERS",
    "ENGINE_RESTART",
    "JOBS",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "PIPELINE_CONFIGS",
    "SESSIONS",
    "ComfyServers",
    "Jobs",
    "PipelineConfigs",
    "Repository",
    "Sessions",
]

R = TypeVar("R", bound=Record)

_HISTORY = 200
"""The most phases a job's history keeps (the newest): a job requeued again and again
must not grow its row without bound."""

MAX_LIMIT = 500
"""The largest page a caller may ask for."""

MAX_OFFSET = 2**31 - 1
"""The largest offset a caller may ask for: every backend's integer holds it (a larger
one overflows SQLite's and MongoDB's drivers and PostgreSQL's ``bigint``)."""

PIPELINE_CONFIGS = TableSpec(
    "pipeline_configs",
    PipelineConfigRecord,
    unique=(("name",),),
    renamed=(("pipeline", "kind"), ("params", "options")),
)
SESSIONS = TableSpec("sessions", SessionRecord, indexes=(("status",), ("pipeline",)))
COMFY_SERVERS = TableSpec("comfy_servers", ComfyServer, unique=(("name",), ("url",)))
JOBS = TableSpec(
    "jobs",
    Job,
    order=("priority", "created_at", "id"),
    unique=(("owner", "idempotency_key"), ("slot",)),
    indexes=(
        ("status",),
        ("server_id",),
        ("lease_owner",),
        ("owner",),
        ("expires_at",),
        ("owner", "created_at", "id"),
    ),
    null_is_value=("owner",),
    retired=(("idempotency_key",),),
)

ENGINE_RESTART = "engine_restart"
"""The ``end_reason`` of a session its node closed at start: the run that opened it died."""


def _refuse_unstorable(value: Any) -> None:
    # What one backend can't store, none takes: the same input fails the same way
    # everywhere (PostgreSQL refuses NUL and NaN, MongoDB ints past 64 bits, every
    # driver strings that aren't UTF-8).
    if isinstance(value, str):
        if "\x00" in value or (not value.isascii() and not _utf8(value)):
            raise Invalid("text must be UTF-8 without NUL characters")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise Invalid("integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid("numbers must be finite")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_unstorable(item)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Repository(Generic[R]):
    """Get, page, patch and delete for one table; subclasses add creation and filters."""

    def __init__(self, table: Table[R], metrics: StoreMetrics) -> None:
        self._table = table
        self._metrics = metrics
        self._spec = table.spec

    def _op(self, operation: str) -> AbstractAsyncContextManager[None]:
        # The metrics' own context manager, not one wrapped around it: this runs
        # on every call, and on a cached get it was most of the cost.
        return self._metrics.operation(f"{self._spec.name}.{operation}")

    async def get(self, record_id: str) -> R:
        """The record with this id. Raises ``NotFound``."""
        async with self._op("get"):
            return await self._table.get(record_id)

    async def delete(self, record_id: str) -> None:
        """Delete the record (and what belongs to it). Raises ``NotFound``."""
        async with self._op("delete"):
            await self._table.delete(record_id)

    async def _create(self, **fields: Any) -> R:
        stamp = now()
        _refuse_unstorable(fields)
        try:
            record = self._spec.record(
                **{"id": new_id(), "created_at": stamp, "updated_at": stamp, **fields}
            )
        except ValidationError as exc:
            fields = field_problems(exc)
            raise Invalid(
                f"invalid {self._spec.name} record: {listing(fields)}", fields=fields
            ) from exc
        async with self._op("create"):
            await self._table.insert(record)
        return record

    async def _list(self, limit: int, offset: int, count: bool = True, **where: Any) -> Page[R]:
        if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            raise Invalid(f"limit must be 1..{MAX_LIMIT} and offset 0..{MAX_OFFSET}")
        filters = {key: value for key, value in where.items() if value is not None}
        async with self._op("list"):
            return await self._table.find(filters, limit=limit, offset=offset, count=count)

    async def _patch(self, record_id: str, patch: BaseModel, *, expect: Where | None = None) -> R:
        # ``None`` leaves a field alone, unless the field itself may be null.
        fields = self._spec.record.model_fields
        changes = {
            key: value
            for key, value in patch.model_dump(exclude_unset=True).items()
            if value is not None or fields[key].default is None
        }
        _refuse_unstorable(changes)
        changes["updated_at"] = now()
        async with self._op("update"):
            return await self._table.update(record_id, changes, expect=expect)


class PipelineConfigs(Repository[PipelineConfigRecord]):
    """Named pipeline configurations; names are unique."""

    async def create(self, new: PipelineConfig) -> PipelineConfigRecord:
        """Store a new config. Raises ``Conflict`` if the name is taken."""
        return await self._create(**new.model_dump())

    async def list(
        self, *, kind: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[PipelineConfigRecord]:
        """A page of configs, oldest first, optionally of one kind. Raises ``Invalid``."""
        return await self._list(limit, offset, kind=kind)

    async def update(self, record_id: str, patch: PipelineConfigPatch) -> PipelineConfigRecord:
        """Change a config. Raises ``NotFound``."""
        return await self._patch(record_id, patch)


class Sessions(Repository[SessionRecord]):
    """Canvas sessions: metadata while open, final stats once closed. Each records
    ``node_id``, the engine node (data dir) that opened it."""

    def __init__(self, table: Table[SessionRecord], metrics: StoreMetrics, node_id: str) -> None:
        super().__init__(table, metrics)
        self._node_id = node_id

    async def create(self, new: NewSession) -> SessionRecord:
        """Record a session that just opened, on this node."""
        return await self._create(**new.model_dump(), node_id=self._node_id)

    async def close_abandoned(self) -> int:
        """Close every session still open from an earlier run of this node, and every
        open one of no node (stored before sessions had nodes), with ``end_reason``
        ``engine_restart``; returns how many. For the start of the node, before it
        opens sessions: the process that ran them is gone. Sessions of other nodes
        sharing the database are left alone.
        """
        stamp = now()
        changes = {
            "status": SessionStatus.CLOSED,
            "ended_at": stamp,
            "updated_at": stamp,
            "end_reason": ENGINE_RESTART,
        }
        closed = 0
        async with self._op("close_abandoned"):
            for node_id in (self._node_id, None):
                where = {"status": SessionStatus.OPEN, "node_id": node_id}
                closed += await self._table.update_where(where, changes)
        return closed

    async def list(
        self,
        *,
        status: SessionStatus | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[SessionRecord]:
        """A page of sessions, oldest first, optionally filtered. Raises ``Invalid``."""
        return await self._list(limit, offset, status=status, pipeline=pipeline)

    async def update(self, record_id: str, patch: SessionPatch) -> SessionRecord:
        """Change an open session. Raises ``NotFound``, ``Conflict`` if it is closed."""
        return await self._patch(record_id, patch, expect={"status": SessionStatus.OPEN})

    async def finish(
        self, record_id: str, stats: dict[str, Any], params: dict[str, Any] | None = None
    ) -> SessionRecord:
        """Close a session with its final stats and, when given, its final params, in
        one write.

        Raises ``NotFound``, ``Conflict`` if closed, ``Invalid`` for stats or params no
        backend can store.
        """
        _refuse_unstorable(stats)
        stamp = now()
        changes: dict[str, Any] = {
            "status": SessionStatus.CLOSED,
            "ended_at": stamp,
            "updated_at": stamp,
            "stats": stats,
        }
        if params is not None:
            _refuse_unstorable(params)
            changes["params"] = params
        async with self._op("finish"):
            return await self._table.update(
                record_id, changes, expect={"status": SessionStatus.OPEN}
            )


class ComfyServers(Repository[ComfyServer]):
    """ComfyUI servers; names and URLs are unique."""

    async def create(self, new: NewComfyServer) -> ComfyServer:
        """Register a server. Raises ``Conflict`` if its name or URL is taken."""
        return await self._create(**new.model_dump())

    async def list(
        self, *, enabled: bool | None = None, limit: int = 50, offset: int = 0
    ) -> Page[ComfyServer]:
        """A page of servers, oldest first. Raises ``Invalid``."""
        return await self._list(limit, offset, enabled=enabled)

    async def update(self, record_id: str, patch: ComfyServerPatch) -> ComfyServer:
        """Change a server. Raises ``NotFound``, ``Conflict`` if the URL is taken."""
        return await self._patch(record_id, patch)


class Jobs(Repository[Job]):
    """Generation jobs and their outputs, listed in dispatch order (priority, then age).

    The dispatcher changes a job only through :meth:`swap`, a conditional update on
    the ``version`` it read: two engine nodes that race for one job (or one slot)
    see one of them win and the other get ``Conflict``, on every backend.
    """

    async def create(self, new: NewJob, *, retention: float | None = None) -> Job:
        """Queue a job (status ``queued``), kept ``retention`` seconds from now if given
        (its ``expires_at``). Raises ``Conflict`` if its owner already used its
        idempotency key."""
        stamp = now()
        fields = new.model_dump()
        if retention is not None:
            fields["expires_at"] = stamp + timedelta(seconds=retention)
        start = JobPhase(status=JobStatus.QUEUED, version=0, at=stamp.timestamp())
        return await self._create(**fields, created_at=stamp, updated_at=stamp, history=(start,))

    async def submit(self, new: NewJob, *, retention: float | None = None) -> tuple[Job, bool]:
        """Queue a job unless its owner has one with the same idempotency key:
        ``(job, created)``."""
        try:
            return await self.create(new, retention=retention), True
        except Conflict:
            if new.idempotency_key is None:
                raise
            earlier = await self.by_idempotency_key(new.owner, new.idempotency_key)
            if earlier is None:
                raise
            return earlier, False

    async def by_idempotency_key(self, owner: str | None, key: str) -> Job | None:
        """``owner``'s job submitted with idempotency key ``key``, if any."""
        async with self._op("by_idempotency_key"):
            page = await self._table.find(
                {"owner": owner, "idempotency_key": key}, limit=1, offset=0
            )
        return page.items[0] if page.items else None

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        server_id: str | None = None,
        lease_owner: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
        count: bool = True,
    ) -> Page[Job]:
        """A page of jobs in dispatch order, by status, server, lease owner and/or
        owner (the key that submitted them); ``count=False`` skips counting them all.
        Raises ``Invalid``."""
        return await self._list(
            limit,
            offset,
            count,
            status=status,
            server_id=server_id,
            lease_owner=lease_owner,
            owner=owner,
        )

    async def newest(
        self, owner: str | None, *, limit: int, below: tuple[datetime, str] | None = None
    ) -> tuple[Job, ...]:
        """Up to ``limit`` jobs, newest first, of ``owner`` (every job's if ``None``),
        created before ``below`` (``(created_at, id)`` of the last job of the page
        before). Raises ``Invalid``."""
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be 1..{MAX_LIMIT}")
        where = {} if owner is None else {"owner": owner}
        async with self._op("newest"):
            page = await self._table.find(
                where,
                limit=limit,
                offset=0,
                order=("created_at", "id"),
                below=below,
                descending=True,
                count=False,
            )
        return page.items

    async def queue_position(self, job: Job) -> int:
        """1 + how many queued jobs run before ``job`` (dispatch order)."""
        async with self._op("queue_position"):
            page = await self._table.find(
                {"status": JobStatus.QUEUED},
                limit=0,
                offset=0,
                below=(job.priority, job.created_at, job.id),
            )
        return page.total + 1

    async def due(self, moment: datetime, *, limit: int) -> tuple[Job, ...]:
        """Up to ``limit`` jobs whose ``expires_at`` is before ``moment``, soonest first."""
        async with self._op("due"):
            page = await self._table.find(
                {}, limit=limit, offset=0, order=("expires_at", "id"), below=(moment, "")
            )
        return page.items

    async def undated(self, *, limit: int) -> tuple[Job, ...]:
        """Up to ``limit`` jobs with no ``expires_at`` yet (stored before retention)."""
        async with self._op("undated"):
            page = await self._table.find({"expires_at": None}, limit=limit, offset=0)
        return page.items

    async def count_unfinished(self, owner: str | None) -> int:
        """How many of ``owner``'s jobs are queued, dispatched or running (``None``: the
        jobs of no owner)."""
        total = 0
        async with self._op("count_unfinished"):
            for status in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING):
                where = {"owner": owner, "status": status}
                total += (await self._table.find(where, limit=1, offset=0)).total
        return total

    async def oldest_queued(self) -> datetime | None:
        """Since when the job that has waited longest in the queue has waited (the last
        change of a queued job is its queuing), or ``None`` when none waits."""
        async with self._op("oldest_queued"):
            page = await self._table.find(
                {"status": JobStatus.QUEUED}, limit=1, offset=0, order=("updated_at", "id")
            )
        return page.items[0].updated_at if page.items else None

    async def update(self, record_id: str, patch: JobPatch) -> Job:
        """Change a job's status, server, outputs or error. Raises ``NotFound``."""
        return await self._patch(record_id, patch)

    async def swap(self, job: Job, **changes: Any) -> Job:
        """Apply ``changes`` only if the job is still at ``job.version``; bumps it.

        Raises ``Conflict`` if it changed meanwhile (or a unique field, such as a
        slot, is taken), ``NotFound``, ``Invalid`` for a value no backend stores.
        """
        try:
            checked = Job.model_validate({**job.model_dump(), **changes}).model_dump()
        except ValidationError as exc:
            raise Invalid(f"invalid job change: {exc.error_count()} error(s)") from exc
        values = {key: checked[key] for key in changes}
        _refuse_unstorable(values)
        stamp = now()
        version = job.version + 1
        status, cancel = checked["status"], checked["cancel_requested"]
        if (status, cancel) != (job.status, job.cancel_requested):
            phase = JobPhase(status=status, cancel=cancel, version=version, at=stamp.timestamp())
            values["history"] = [*checked["history"], phase.model_dump()][-_HISTORY:]
        values.update(version=version, updated_at=stamp)
        async with self._op("swap"):
            return await self._table.update(job.id, values, expect={"version": job.version})
