from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine.settings import Settings
from tests.support import (
    Easel,
    EaselServer,
    PgCluster,
    Secantus,
    ServerFactory,
    ServerStarter,
    running_pg_cluster,
    seed_sqlite,
    sqlite_template,
)
from transport.app import ADMIN_KEY_FILE, create_app

# Crash tests log tracebacks on purpose; keep the output readable.
logging.getLogger("engine").setLevel(logging.CRITICAL)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with running_pg_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at head, copied into fresh data dirs (``seed_sqlite``)."""
    return sqlite_template(tmp_path_factory.mktemp("migrated"))


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


@pytest.fixture
async def easel_server() -> AsyncIterator[ServerStarter]:
    """Start Easel apps as ``easel serve`` serves them (through the connection guard);
    they are closed after the test."""
    servers: list[EaselServer] = []

    async def start(app: web.Application, **kwargs: Any) -> EaselServer:
        server = EaselServer(app)
        servers.append(server)
        await server.start_server(**kwargs)
        return server

    yield start
    while servers:
        await servers.pop().close()


@pytest.fixture
async def easel_factory(
    easel_server: ServerStarter, tmp_path: Path, migrated_sqlite: Path
) -> AsyncIterator[ServerFactory]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(**overrides: Any) -> Easel:
        """A server with auth on; its HTTP session carries the admin key the first
        start wrote (``Easel.admin_key``), unless ``insecure=True``."""
        settings = Settings(data_dir=tmp_path, **overrides)
        seed_sqlite(settings, migrated_sqlite)
        server = await easel_server(create_app(settings, announce=lambda _: None))
        key_file = tmp_path / ADMIN_KEY_FILE
        admin_key = key_file.read_text().strip() if key_file.exists() else None
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else None
        http = aiohttp.ClientSession(headers=headers)
        sessions.append(http)
        return Easel(server, http, admin_key)

    yield make
    for http in sessions:
        await http.close()


@pytest.fixture
async def easel(easel_factory: ServerFactory) -> Easel:
    return await easel_factory()
