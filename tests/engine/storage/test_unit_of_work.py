"""Units of work always give their connection back: errors, cancellations, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from engine.errors import EaselError, NotFound
from engine.storage.migrations import upgrade
from engine.storage.projects import PROJECTS
from engine.storage.records import Project, new_id, now
from engine.storage.sql import SqlBackend
from engine.storage.sql.schema import METADATA
from tests.support import create_database

OPERATIONS = 3000
CONCURRENCY = 32


class Injected(Exception):
    """A failure raised on purpose inside a unit of work."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, registry: CollectorRegistry
) -> AsyncIterator[SqlBackend]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}"
    else:
        url = await create_database(request.getfixturevalue("pg_cluster"))
    await upgrade(url)
    backend = SqlBackend(url, registry, pool_size=4, max_overflow=4, timeout=10)
    yield backend
    await backend.close()


def _project(name: str) -> Project:
    stamp = now()
    return Project(id=new_id(), name=name, created_at=stamp, updated_at=stamp)


async def test_thousands_of_failing_and_cancelled_units_leak_nothing(
    backend: SqlBackend, registry: CollectorRegistry
) -> None:
    table = backend.table(PROJECTS)
    projects = METADATA.tables["projects"]
    rng = random.Random(7)
    gate = asyncio.Semaphore(CONCURRENCY)
    outcomes = {"ok": 0, "injected": 0, "cancelled": 0, "engine_error": 0}

    async def raise_inside(index: int) -> None:
        async with backend.unit() as conn:
            await conn.execute(
                projects.insert().values(_project(f"rolled-back-{index}").model_dump())
            )
            raise Injected

    async def one(index: int) -> None:
        kind = rng.choice(("insert", "get_missing", "raise", "cancel", "cancel", "raise"))
        async with gate:
            if kind == "insert":
                await table.insert(_project(f"p-{index}"))
                outcomes["ok"] += 1
            elif kind == "get_missing":
                with pytest.raises(NotFound):
                    await table.get(new_id())
                outcomes["engine_error"] += 1
            elif kind == "raise":
                with pytest.raises(Injected):
                    await raise_inside(index)
                outcomes["injected"] += 1
            else:
                task = asyncio.create_task(raise_inside(index))
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Injected, EaselError):
                    await task
                outcomes["cancelled"] += 1

    await asyncio.gather(*(one(i) for i in range(OPERATIONS)))

    assert sum(outcomes.values()) == OPERATIONS
    assert min(outcomes.values()) > 100
    assert backend.pool_status().checked_out == 0
    assert registry.get_sample_value("easel_db_pool_checked_out") == 0
    async with backend.unit() as conn:
        leaked = select(func.count()).where(projects.c.name.like("rolled-back-%"))
        assert (await conn.execute(leaked)).scalar_one() == 0
        total = (await conn.execute(select(func.count()).select_from(projects))).scalar_one()
    assert total == outcomes["ok"]
    await backend.ping()
    assert backend.pool_status().checked_out == 0


async def test_a_unit_that_outlives_its_timeout_is_unavailable_and_returns_its_connection(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    await upgrade(url)
    backend = SqlBackend(url, registry, timeout=0.2)
    try:
        with pytest.raises(EaselError) as caught:
            async with backend.unit():
                await asyncio.sleep(5)
        assert caught.value.code == "unavailable"
        assert backend.pool_status().checked_out == 0
    finally:
        await backend.close()
