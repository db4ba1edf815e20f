"""Opening and closing stores: unreachable databases, many stores, the public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import engine.storage
from engine.errors import Conflict, Unavailable
from engine.settings import Settings
from engine.storage import NewApiKey, NewProject, NewSession, open_store
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


async def test_a_data_dir_holds_one_open_store_at_a_time(tmp_path: Path) -> None:
    first = await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    try:
        with pytest.raises(Conflict, match=f"data dir {tmp_path} is in use by another Easel"):
            await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    finally:
        await first.close()
    again = await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    await again.close()


async def test_a_visitor_writes_beside_the_owner_and_the_owner_reads_it(tmp_path: Path) -> None:
    owner = await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    try:
        visitor = await open_store(
            Settings(data_dir=tmp_path), CollectorRegistry(), own_data_dir=False
        )
        try:
            key, _ = await visitor.api_keys.create(NewApiKey(name="ops"))
        finally:
            await visitor.close()
        assert (await owner.api_keys.get(key.id)).name == "ops"
        with pytest.raises(Conflict, match="in use"):  # visiting never took the lock
            await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    finally:
        await owner.close()


async def test_a_data_dir_keeps_one_node_id(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "a", "b"):
        store = await open_store(Settings(data_dir=tmp_path / name), CollectorRegistry())
        try:
            ids.append((await store.sessions.create(NewSession(pipeline="p"))).node_id)
        finally:
            await store.close()
    assert ids[0] == ids[1] != ids[2]
    assert (tmp_path / "a" / "node-id").read_text() == f"{ids[0]}\n"

    (tmp_path / "b" / "node-id").write_text("not an id")
    with pytest.raises(ValueError, match="does not hold a node id"):
        await open_store(Settings(data_dir=tmp_path / "b"), CollectorRegistry())
    (tmp_path / "b" / "node-id").unlink()  # the refusal left the data dir free
    store = await open_store(Settings(data_dir=tmp_path / "b"), CollectorRegistry())
    await store.close()


def test_public_surface_is_pinned() -> None:
    records = {
        "ApiKey", "Clip", "ClipPatch", "ComfyServer", "ComfyServerPatch", "Job", "JobOutput",
        "JobPatch", "JobStatus", "Media", "NewApiKey", "NewClip", "NewComfyServer", "NewJob",
        "NewProject", "NewScene", "NewSession", "Page", "PipelineConfigPatch",
        "PipelineConfigRecord", "PoolStatus", "Project", "ProjectPatch", "Role", "Scene",
        "ScenePatch", "SessionPatch", "SessionRecord", "SessionStatus",
    }  # fmt: skip
    repositories = {
        "ApiKeys", "Clips", "ComfyServers", "Jobs", "MediaRepository", "PipelineConfigs",
        "Projects", "Scenes", "Sessions",
    }  # fmt: skip
    assert set(engine.storage.__all__) == records | repositories | {"Store", "open_store"}
    assert all(hasattr(engine.storage, name) for name in engine.storage.__all__)


async def test_nodes_on_one_database_share_media_through_media_dir(tmp_path: Path) -> None:
    # Two nodes: one database, a data dir each (each owns its own), one media dir.
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    common = {"database_url": url, "db_auto_migrate": True, "media_dir": tmp_path / "media"}
    one = await open_store(Settings(data_dir=tmp_path / "a", **common), CollectorRegistry())
    two = await open_store(Settings(data_dir=tmp_path / "b", **common), CollectorRegistry())
    try:
        record = await one.media.put(b"\x89PNG-bytes", "image/png", "out.png")
        assert await two.media.read(record.id) == b"\x89PNG-bytes"
        assert not (tmp_path / "a" / "media").exists()
    finally:
        await one.close()
        await two.close()
