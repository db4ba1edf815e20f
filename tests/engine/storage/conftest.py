"""Real servers for the storage suite, and a store per backend for the contract tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from engine.settings import Settings
from engine.storage import Store, open_store
from tests.engine.storage.servers import PgCluster, Secantus, running_pg_cluster

BACKENDS = ("sqlite", "postgresql", "mongodb")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with running_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    if uri := os.environ.get("MONGODB_URI"):
        yield uri
        return
    server = Secantus()
    try:
        yield server.uri
    finally:
        server.stop()


async def create_database(cluster: PgCluster) -> str:
    """A fresh, empty database on ``cluster``; returns its SQLAlchemy URL."""
    return await cluster.create_database()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def settings_for(backend: str, data_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for ``backend``; PostgreSQL and MongoDB get a fresh database each."""
    if backend == "sqlite":
        return Settings(data_dir=data_dir)
    if backend == "postgresql":
        url = await create_database(request.getfixturevalue("pg_cluster"))
        return Settings(data_dir=data_dir, database_url=url, db_auto_migrate=True)
    uri: str = request.getfixturevalue("mongodb_uri")
    return Settings(
        data_dir=data_dir,
        store_backend="mongodb",
        mongodb_uri=uri,
        mongodb_database="t_" + uuid.uuid4().hex[:12],
    )


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, registry: CollectorRegistry
) -> AsyncIterator[Store]:
    store = await open_store(await settings_for(request.param, tmp_path, request), registry)
    try:
        yield store
    finally:
        await store.close()
