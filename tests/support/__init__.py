"""What tests share: throwaway database servers, a real Easel server and its clients,
free ports, and waiting for a condition. Tests import these from here, never from each
other's modules."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from PIL import Image
from pymongo import MongoClient

from engine.settings import Settings
from engine.storage import migrations
from ops.bench.servers import free_port
from ops.pgcluster import PgCluster
from transport.client import Client, Result, ServerError
from transport.connections import GuardedRunner
from transport.protocol import Frame, decode

__all__ = [
    "EASEL",
    "ROOT",
    "Easel",
    "EaselServer",
    "PgCluster",
    "Secantus",
    "ServerFactory",
    "ServerStarter",
    "collect",
    "create_database",
    "eventually",
    "free_port",
    "get",
    "missing",
    "png",
    "refused",
    "running_pg_cluster",
    "seed_sqlite",
    "settings_for",
    "sqlite_template",
    "wait_until_serving",
]


def missing(what: str) -> None:
    """Skip a test whose server can't be found, but fail it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI")
    pytest.skip(f"{what} not available")


@contextmanager
def running_pg_cluster() -> Iterator[PgCluster]:
    """A started throwaway cluster, destroyed on exit; a skip (a failure on CI) without
    PostgreSQL."""
    try:
        cluster = PgCluster()
    except FileNotFoundError:
        missing("PostgreSQL (initdb)")
        raise
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class Secantus:
    """SecantusDB (a MongoDB-compatible server, test-only) in memory on a free port."""

    def __init__(self, port: int | None = None) -> None:
        binary = Path(sys.executable).parent / "secantusd-py"
        if not binary.exists():
            missing("SecantusDB (secantusd-py)")
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        command = [str(binary), "--host", "127.0.0.1", "--port", str(self.port)]
        self._proc = subprocess.Popen(
            [*command, "--storage-path", ":memory:"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        client: MongoClient[dict[str, object]] = MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except Exception:
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("SecantusDB did not start") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server: it holds nothing on disk, and a SIGTERM took 2 s when idle
        and the full 10 s grace (ending in a kill anyway) after the whole suite."""
        self._proc.kill()
        self._proc.wait()


def sqlite_template(directory: Path) -> Path:
    """An empty SQLite database migrated to head, made in ``directory``: what every
    first start on a fresh data dir makes (alembic takes about 0.35 s for it)."""
    settings = Settings(data_dir=directory)
    with ThreadPoolExecutor(1) as thread:  # callers may be inside a running loop
        thread.submit(asyncio.run, migrations.upgrade(settings.sql_url)).result()
    return directory / settings.sql_url.rsplit("/", 1)[1]


def seed_sqlite(settings: Settings, template: Path) -> None:
    """Copy ``template`` to where ``settings`` keep their embedded SQLite database, if
    they use one and it is not there yet; the start then finds its schema at head.
    The migrations themselves are tested in ``tests/engine/storage/test_migrations.py``
    and by every ``easel serve`` the tests start."""
    if settings.store_backend != "sql" or settings.database_url is not None:
        return
    target = settings.data_dir / template.name
    if not target.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)


async def create_database(cluster: PgCluster) -> str:
    """A fresh, empty database on ``cluster``; returns its SQLAlchemy URL."""
    return await cluster.create_database()


async def settings_for(backend: str, data_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for ``backend``; PostgreSQL and MongoDB get a fresh database each."""
    if backend == "sqlite":
        settings = Settings(data_dir=data_dir)
        seed_sqlite(settings, request.getfixturevalue("migrated_sqlite"))
        return settings
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


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


ServerFactory = Callable[..., Awaitable["Easel"]]


class EaselServer(TestServer):
    """A test server that accepts connections as ``easel serve`` does: through the
    connection guard, with the engine's keep-alive and shutdown timeouts."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GuardedRunner(self.app, **kwargs)


ServerStarter = Callable[..., Awaitable[EaselServer]]
"""The ``easel_server`` fixture: ``await easel_server(create_app(...), **runner_kwargs)``."""


class Easel:
    """A running server plus an HTTP session to talk REST to it."""

    def __init__(
        self, server: TestServer, http: aiohttp.ClientSession, admin_key: str | None = None
    ) -> None:
        self.server = server
        self.http = http
        self.admin_key = admin_key
        """The admin key the server's first start created (``None`` when insecure)."""
        self.url = str(server.make_url("")).rstrip("/")

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body) as response:
            return response.status, await _json(response)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body) as response:
            return response.status, await _json(response)

    async def session(self, **body: Any) -> dict[str, Any]:
        status, answer = await self.post("/api/v1/sessions", body)
        assert status == 201, answer
        result: dict[str, Any] = answer
        return result

    async def connect(self, **body: Any) -> Client:
        created = await self.session(**body)
        return await Client.connect(
            self.url, token=created["token"], session=created["id"], http=self.http
        )


async def _json(response: aiohttp.ClientResponse) -> Any:
    if response.status == 204:
        return None
    return await response.json(content_type=None)


def png(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def collect(client: Client, count: int) -> list[Result | ServerError]:
    answers: list[Result | ServerError] = []
    async with asyncio.timeout(20):
        async for answer in client.results():
            answers.append(answer)
            if len(answers) == count:
                break
    return answers


async def refused(easel: Easel, path: str, token: str) -> tuple[list[Frame], int | None]:
    """Connect raw, read until the server closes: (frames received, close code)."""
    frames: list[Frame] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with easel.http.ws_connect(
        easel.url + path, protocols=("easel.v1",), headers=headers
    ) as ws:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                frames.append(decode(message.data))
        return frames, ws.close_code


EASEL = [sys.executable, "-m", "transport.cli"]
ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_serving(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"easel serve exited early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("easel serve did not start listening")
