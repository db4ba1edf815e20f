"""The store: every repository over one backend, opened and closed as a unit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine.errors import Unavailable
from engine.settings import Settings
from engine.storage import migrations
from engine.storage.api_keys import API_KEYS, ApiKeys
from engine.storage.datadir import DataDir
from engine.storage.media import MEDIA, MediaFiles, MediaRepository
from engine.storage.metrics import PoolStatus
from engine.storage.mongo import MongoBackend
from engine.storage.projects import CLIPS, PROJECTS, SCENES, Clips, Projects, Scenes
from engine.storage.repository import (
    COMFY_SERVERS,
    JOBS,
    PIPELINE_CONFIGS,
    SESSIONS,
    ComfyServers,
    Jobs,
    PipelineConfigs,
    Sessions,
)
from engine.storage.sql import SqlBackend
from engine.storage.table import Backend

__all__ = ["Store", "open_store"]


class Store:
    """Every repository, over one backend. Build it with :func:`open_store`.

    All methods run on the event loop; every repository method may raise
    ``Unavailable`` while the database is unreachable, and works again once it is
    back, without reopening the store. The store owns its data dir until closed.
    """

    def __init__(self, backend: Backend, data_dir: DataDir, media_dir: Path | None = None) -> None:
        self._backend = backend
        self._data_dir = data_dir
        media_root = media_dir if media_dir is not None else data_dir.path / "media"
        metrics = backend.metrics
        projects = backend.table(PROJECTS)
        scenes = backend.table(SCENES)
        media = backend.table(MEDIA)
        self.pipeline_configs = PipelineConfigs(backend.table(PIPELINE_CONFIGS), metrics)
        self.sessions = Sessions(backend.table(SESSIONS), metrics, data_dir.node_id)
        self.comfy_servers = ComfyServers(backend.table(COMFY_SERVERS), metrics)
        self.jobs = Jobs(backend.table(JOBS), metrics)
        self.media = MediaRepository(media, metrics, MediaFiles(media_root))
        self.projects = Projects(projects, metrics)
        self.scenes = Scenes(scenes, metrics, projects)
        self.clips = Clips(backend.table(CLIPS), metrics, scenes, media)
        self.api_keys = ApiKeys(backend.table(API_KEYS), metrics)

    def pool_status(self) -> PoolStatus:
        """The connection pool right now (also exported as ``easel_db_pool_*``)."""
        return self._backend.pool_status()

    async def ping(self) -> None:
        """Return when the database answers (readiness). Raises ``Unavailable``."""
        await self._backend.ping()

    async def close(self) -> None:
        """Close every connection, unregister the metrics and give the data dir up.
        Idempotent."""
        try:
            await self._backend.close()
        finally:
            self._data_dir.release()


async def open_store(
    settings: Settings, registry: CollectorRegistry, *, own_data_dir: bool = True
) -> Store:
    """Open the store ``settings`` describe, registering its metrics on ``registry``.

    First claims ``settings.data_dir`` (created if missing) for this store: raises
    ``DataDirInUse`` (a ``Conflict``) while another process, or another open store,
    owns it. SQL: migrates the schema first when ``settings.db_auto_migrate`` says so
    (by default only for SQLite, whose file lives in the data dir). MongoDB: ensures
    indexes. Raises ``Unavailable`` if the database can't be reached, or if the SQL
    schema isn't at the newest migration and auto-migration is off.

    ``own_data_dir=False`` opens the store beside the process that owns the data dir
    (``DataDir.visit``), with no record cache, for short administrative writes.
    """
    data_dir = (
        DataDir.claim(settings.data_dir) if own_data_dir else DataDir.visit(settings.data_dir)
    )
    try:
        return await _open(settings, registry, data_dir)
    except BaseException:
        data_dir.release()
        raise


async def _open(settings: Settings, registry: CollectorRegistry, data_dir: DataDir) -> Store:
    backend: SqlBackend | MongoBackend
    if settings.store_backend == "mongodb":
        backend = MongoBackend(
            settings.mongodb_uri,
            settings.mongodb_database,
            registry,
            pool_size=settings.db_pool_size,
            timeout=settings.db_timeout,
        )
        store = Store(backend, data_dir, settings.media_dir)
        try:
            await backend.start()
        except BaseException:
            await store.close()
            raise
        return store

    url = settings.sql_url
    owner = data_dir.owned
    await _prepare_schema(settings, url)
    backend = SqlBackend(
        url,
        registry,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout,
        # Only the embedded default is certain to have one process as its writer.
        cache_size=settings.db_cache_size if settings.database_url is None and owner else 0,
    )
    return Store(backend, data_dir, settings.media_dir)


async def _prepare_schema(settings: Settings, url: str) -> None:
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    auto = settings.db_auto_migrate if settings.db_auto_migrate is not None else is_sqlite
    try:
        # Bounded: an unreachable database fails here within the timeout.
        async with asyncio.timeout(settings.db_timeout):
            at = await migrations.current(url)
        if at != migrations.head() and auto:
            await migrations.upgrade(url)
            return
    except (DBAPIError, OSError, TimeoutError) as exc:
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
    if at != migrations.head():
        raise Unavailable(
            f"database schema is at {at or 'no revision'}, expected {migrations.head()}: "
            "run the migrations (engine.storage.migrations.upgrade) or enable db_auto_migrate"
        )
