"""Opening and closing stores: unreachable databases, many stores, the public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import engine.storage
from engine.errors import Unavailable
from engine.settings import Settings
from engine.storage import NewProject, open_store
from tests.support import free_port


async def test_unreachable_mongodb_fails_fast_and_frees_the_registry(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    settings = Settings(
        data_dir=tmp_path,
        store_backend="mongodb",
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}",
        db_timeout=0.5,
    )
    with pytest.raises(Unavailable):
        await open_store(settings, registry)
    store = await open_store(Settings(data_dir=tmp_path), registry)
    await store.close()


async def test_unreachable_postgresql_is_unavailable(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://easel@127.0.0.1:{free_port()}/easel"
    for auto in (True, False):
        settings = Settings(data_dir=tmp_path, database_url=url, db_auto_migrate=auto)
        with pytest.raises(Unavailable):
            await open_store(settings, CollectorRegistry())


async def test_stores_are_independent_and_close_cleanly(tmp_path: Path) -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first = await open_store(Settings(data_dir=tmp_path / "a"), first_registry)
    second = await open_store(Settings(data_dir=tmp_path / "b"), second_registry)
    await first.projects.create(NewProject(name="only in a"))
    assert (await second.projects.list()).total == 0
    labels = {"operation": "projects.create"}
    assert first_registry.get_sample_value("easel_db_query_seconds_count", labels) == 1
    assert second_registry.get_sample_value("easel_db_query_seconds_count", labels) is None
    await first.close()
    await first.close()
    await second.close()
    assert first_registry.get_sample_value("easel_db_pool_size") is None
    reopened = await open_store(Settings(data_dir=tmp_path / "a"), first_registry)
    try:
        assert (await reopened.projects.list()).total == 1
    finally:
        await reopened.close()


def test_public_surface_is_pinned() -> None:
    records = {
        "ApiKey", "Clip", "ClipPatch", "ComfyServer", "ComfyServerPatch", "Job", "JobOutput",
        "JobPatch", "JobStatus", "Media", "NewApiKey", "NewClip", "NewComfyServer", "NewJob",
        "NewPipelineConfig", "NewProject", "NewScene", "NewSession", "Page", "PipelineConfig",
        "PipelineConfigPatch", "PoolStatus", "Project", "ProjectPatch", "Role", "Scene",
        "ScenePatch", "SessionPatch", "SessionRecord", "SessionStatus",
    }  # fmt: skip
    repositories = {
        "ApiKeys", "Clips", "ComfyServers", "Jobs", "MediaRepository", "PipelineConfigs",
        "Projects", "Scenes", "Sessions",
    }  # fmt: skip
    assert set(engine.storage.__all__) == records | repositories | {"Store", "open_store"}
    assert all(hasattr(engine.storage, name) for name in engine.storage.__all__)
