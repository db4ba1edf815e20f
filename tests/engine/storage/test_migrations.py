"""Alembic migrations: an empty database and one at the previous revision reach head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from engine.errors import Unavailable
from engine.settings import Settings
from engine.storage import NewProject, open_store
from engine.storage.migrations import current, head, upgrade
from engine.storage.sql.schema import METADATA
from tests.engine.storage.conftest import create_database

PREVIOUS = "0001"


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    return await create_database(request.getfixturevalue("pg_cluster"))


async def _schema_diff(url: str) -> list[Any]:
    def diff(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), METADATA))

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def test_empty_database_upgrades_to_the_schema_the_code_uses(empty_url: str) -> None:
    assert await current(empty_url) is None
    await upgrade(empty_url)
    assert await current(empty_url) == head()
    assert await _schema_diff(empty_url) == []
    await upgrade(empty_url)  # idempotent
    assert await current(empty_url) == head()


async def test_previous_revision_upgrades_and_keeps_its_rows(
    empty_url: str, tmp_path: Path
) -> None:
    await upgrade(empty_url, PREVIOUS)
    assert await current(empty_url) == PREVIOUS
    engine = create_async_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO pipeline_configs"
                    " (id, name, pipeline, params, replicas, created_at, updated_at)"
                    " VALUES ('c1', 'kept', 'imagefx', '{}', 2,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        await engine.dispose()

    await upgrade(empty_url)

    assert await current(empty_url) == head()
    settings = Settings(data_dir=tmp_path, database_url=empty_url, db_auto_migrate=False)
    store = await open_store(settings, CollectorRegistry())
    try:
        kept = await store.pipeline_configs.get("c1")
        assert (kept.name, kept.replicas) == ("kept", 2)
        project = await store.projects.create(NewProject(name="new table works"))
        assert await store.projects.get(project.id) == project
    finally:
        await store.close()


async def test_store_refuses_an_old_schema_without_auto_migrate(
    empty_url: str, tmp_path: Path
) -> None:
    await upgrade(empty_url, PREVIOUS)
    settings = Settings(data_dir=tmp_path, database_url=empty_url, db_auto_migrate=False)
    with pytest.raises(Unavailable, match="0001"):
        await open_store(settings, CollectorRegistry())
    assert await current(empty_url) == PREVIOUS


async def test_embedded_sqlite_migrates_at_start_by_default(tmp_path: Path) -> None:
    store = await open_store(Settings(data_dir=tmp_path / "data"), CollectorRegistry())
    await store.close()
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'easel.db'}"
    assert await current(url) == head()
