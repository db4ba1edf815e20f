"""Migrations: SQL databases, empty or at an older revision, reach head; MongoDB renames."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from engine.errors import Conflict, Unavailable
from engine.settings import Settings
from engine.storage import NewJob, NewProject, PipelineConfigPatch, Store, open_store
from engine.storage.migrations import MIGRATION_LOCK, current, head, upgrade
from engine.storage.records import now
from engine.storage.sql.schema import METADATA
from tests.support import PgCluster, create_database, settings_for

PREVIOUS = "0002"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    return await create_database(request.getfixturevalue("pg_cluster"))


async def _schema_diff(url: str) -> list[Any]:
    def diff(connection: Connection) -> list[Any]:
        with warnings.catch_warnings():
            # SQLite can't reflect the per-owner expression indexes; the contract
            # tests check what they enforce on every backend.
            warnings.filterwarnings("ignore", ".*expression-based index")
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


@pytest.mark.parametrize("older", ["0001", PREVIOUS])
async def test_older_revisions_upgrade_and_keep_their_rows(
    empty_url: str, older: str, tmp_path: Path
) -> None:
    await upgrade(empty_url, older)
    assert await current(empty_url) == older
    engine = create_async_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO pipeline_configs"
                    " (id, name, pipeline, params, replicas, created_at, updated_at)"
                    """ VALUES ('c1', 'kept', 'imagefx', '{"max_pixels": 4}', 2,"""
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
        assert (kept.name, kept.kind, kept.replicas, kept.max_batch) == ("kept", "imagefx", 2, None)
        assert kept.options == {"max_pixels": 4}
        batched = await store.pipeline_configs.update("c1", PipelineConfigPatch(max_batch=8))
        assert await store.pipeline_configs.get("c1") == batched
        project = await store.projects.create(NewProject(name="new table works"))
        assert await store.projects.get(project.id) == project
    finally:
        await store.close()


async def upgraded_with(url: str, tmp_path: Path, revision: str, *rows: str) -> Store:
    """Migrate ``url`` to ``revision``, insert ``rows`` (SQL statements) as a store of
    that age would have, migrate to the newest and open a store on it."""
    await upgrade(url, revision)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for row in rows:
                await conn.execute(text(row))
    finally:
        await engine.dispose()
    await upgrade(url)
    settings = Settings(data_dir=tmp_path, database_url=url, db_auto_migrate=False)
    return await open_store(settings, CollectorRegistry())


async def test_sessions_stored_before_nodes_keep_their_rows_and_close_at_start(
    empty_url: str, tmp_path: Path
) -> None:
    store = await upgraded_with(
        empty_url,
        tmp_path,
        "0003",
        "INSERT INTO sessions (id, pipeline, drain, client, params, status, stats,"
        " created_at, updated_at) VALUES ('s1', 'fx', 'latest', 'web',"
        """ '{"a": 1}', 'open', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)""",
    )
    try:
        kept = await store.sessions.get("s1")
        assert (kept.pipeline, kept.client, kept.params) == ("fx", "web", {"a": 1})
        assert (kept.node_id, kept.end_reason) == (None, None)
        assert await store.sessions.close_abandoned() == 1
        assert (await store.sessions.get("s1")).end_reason == "engine_restart"
    finally:
        await store.close()


async def test_jobs_and_projects_stored_before_owners_keep_their_rows(
    empty_url: str, tmp_path: Path
) -> None:
    store = await upgraded_with(
        empty_url,
        tmp_path,
        "0007",
        "INSERT INTO projects (id, name, description, owner, created_at, updated_at)"
        " VALUES ('p1', 'x', '', 'alice', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO jobs (id, workflow, params, status, outputs, prompt, priority,"
        " max_attempts, idempotency_key, node_errors, attempts, progress,"
        " cancel_requested, version, created_at, updated_at) VALUES ('j1', 'w',"
        " '{}', 'queued', '[]', '{}', 0, 3, 'k', '{}', 0, 0, false, 0,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    try:
        kept = await store.jobs.get("j1")
        assert (kept.owner, kept.idempotency_key) == (None, "k")
        assert await store.jobs.submit(NewJob(workflow="w", idempotency_key="k")) == (kept, False)
        _, created = await store.jobs.submit(NewJob(workflow="w", idempotency_key="k", owner="b"))
        assert created
        assert (await store.projects.get("p1")).owner == "alice"
        await store.projects.create(NewProject(name="x"), owner="bob")
        with pytest.raises(Conflict):
            await store.projects.create(NewProject(name="x"), owner="alice")
    finally:
        await store.close()


async def test_store_refuses_an_old_schema_without_auto_migrate(
    empty_url: str, tmp_path: Path
) -> None:
    await upgrade(empty_url, PREVIOUS)
    settings = Settings(data_dir=tmp_path, database_url=empty_url, db_auto_migrate=False)
    with pytest.raises(Unavailable, match=PREVIOUS):
        await open_store(settings, CollectorRegistry())
    assert await current(empty_url) == PREVIOUS


async def _waiting_for_the_migration_lock(conn: AsyncConnection) -> int:
    """Backends of this database waiting for the migration lock right now."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = :key"
    )
    return int((await conn.execute(query, {"key": MIGRATION_LOCK})).scalar_one())


async def _easel_db_upgrade(url: str, cwd: Path) -> asyncio.subprocess.Process:
    """``easel db upgrade`` against ``url`` in a process of its own, as a node runs it."""
    env = {**os.environ, "EASEL_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "transport.cli", "db", "upgrade"),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_concurrent_upgrades_on_postgresql_take_turns_on_an_advisory_lock(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    url = await create_database(pg_cluster)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            nodes = [await _easel_db_upgrade(url, tmp_path) for _ in range(2)]
            deadline = time.monotonic() + 60  # a hang guard
            while await _waiting_for_the_migration_lock(holder) < 2:
                exited = [node.returncode for node in nodes if node.returncode is not None]
                assert exited == [], "an upgrade ran while the migration lock was held"
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                await asyncio.sleep(0.05)
            assert await current(url) is None  # neither touched the schema meanwhile
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            outcomes = [await node.communicate() for node in nodes]
    finally:
        await engine.dispose()
    for node, (out, err) in zip(nodes, outcomes, strict=True):
        assert node.returncode == 0, err.decode()
        assert out.decode().startswith(f"schema revision: {head()} ")
    assert await current(url) == head()
    assert await _schema_diff(url) == []


async def test_embedded_sqlite_migrates_at_start_by_default(tmp_path: Path) -> None:
    store = await open_store(Settings(data_dir=tmp_path / "data"), CollectorRegistry())
    await store.close()
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'easel.db'}"
    assert await current(url) == head()


async def test_mongodb_renames_old_pipeline_config_fields_at_start(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = await settings_for("mongodb", tmp_path, request)
    stamp = now()
    old = {"_id": "c1", "name": "kept", "pipeline": "imagefx", "params": {"max_pixels": 4}}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        coll = client[settings.mongodb_database]["pipeline_configs"]
        await coll.insert_one({**old, "replicas": 2, "created_at": stamp, "updated_at": stamp})
    finally:
        await client.close()

    for _ in range(2):  # renaming at start is idempotent
        store = await open_store(settings, CollectorRegistry())
        try:
            kept = await store.pipeline_configs.get("c1")
        finally:
            await store.close()
        assert (kept.kind, kept.options, kept.replicas, kept.max_batch) == (
            "imagefx",
            {"max_pixels": 4},
            2,
            None,
        )


async def test_mongodb_drops_the_global_unique_indexes_of_project_names_and_job_keys(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = await settings_for("mongodb", tmp_path, request)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        db = client[settings.mongodb_database]
        await db["projects"].create_index("name", unique=True)
        await db["jobs"].create_index(
            "idempotency_key",
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
        )
    finally:
        await client.close()

    store = await open_store(settings, CollectorRegistry())
    try:
        for owner in ("alice", "bob"):
            await store.projects.create(NewProject(name="x"), owner=owner)
            await store.jobs.create(NewJob(workflow="w", idempotency_key="k", owner=owner))
        with pytest.raises(Conflict):
            await store.projects.create(NewProject(name="x"), owner="alice")
    finally:
        await store.close()


async def test_mongodb_sessions_stored_before_nodes_close_at_start(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = await settings_for("mongodb", tmp_path, request)
    stamp = now()
    old = {"_id": "s1", "pipeline": "fx", "drain": "latest", "client": "", "params": {}}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        coll = client[settings.mongodb_database]["sessions"]
        await coll.insert_one(
            {**old, "status": "open", "stats": {}, "created_at": stamp, "updated_at": stamp}
        )
    finally:
        await client.close()

    store = await open_store(settings, CollectorRegistry())
    try:
        assert (await store.sessions.get("s1")).node_id is None
        assert await store.sessions.close_abandoned() == 1
        swept = await store.sessions.get("s1")
    finally:
        await store.close()
    assert (swept.status, swept.end_reason) == ("closed", "engine_restart")
