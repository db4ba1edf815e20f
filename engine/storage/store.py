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
    back, without reopening the store.
    """

    def __init__(self, backend: Backend, media_root: Path) -> None:
        self._backend = backend
        metrics = backend.metrics
        projects = backend.table(PROJECTS)
        scenes = backend.table(SCENES)
        media = backend.table(MEDIA)
        self.pipeline_configs = PipelineConfigs(backend.table(PIPELINE_CONFIGS), metrics)
        self.sessions = Sessions(backend.table(SESSIONS), metrics)
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
        """Close every connection and unregister the metrics. Idempotent."""
        await self._backend.close()


async def open_store(settings: Settings, registry: CollectorRegistry) -> Store:
    """Open the store ``settings`` describe, registering its metrics on ``registry``.

    SQL: migrates the schema first when ``settings.db_auto_migrate`` says so (by
    default only for SQLite, whose file is created under ``settings.data_dir``).
    MongoDB: ensures indexes. Raises ``Unavailable`` if the database can't be
    reached, or if the SQL schema isn't at the newest migration and auto-migration
    is off.
    """
    media_root = settings.data_dir / "media"
    backend: SqlBackend | MongoBackend
    if settings.store_backend == "mongodb":
        backend = MongoBackend(
            settings.mongodb_uri,
            settings.mongodb_database,
            registry,
            pool_size=settings.db_pool_size,
            timeout=settings.db_timeout,
        )
        store = Store(backend, media_root)
        try:
            await backend.start()
        except BaseException:
            await store.close()
            raise
        return store

    url = settings.sql_url
    await _prepare_schema(settings, url)
    backend = SqlBackend(
        url,
        registry,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout=settings.db_timeout,
        # Only the embedded default is certain to have one process as its writer.
        cache_size=settings.db_cache_size if settings.database_url is None else 0,
    )
    return Store(backend, media_root)


async def _prepare_schema(settings: Settings, url: str) -> None:
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    if is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
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
