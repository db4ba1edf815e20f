"""No stale reads: every kind of write is seen by the next ``get``, on every backend.

Each test reads a record first (on the embedded SQLite default that fills the
read-through cache), writes, then reads again. The cache itself is checked below.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event

from engine.errors import Conflict, NotFound
from engine.settings import Settings
from engine.storage import (
    ClipPatch,
    ComfyServerPatch,
    JobPatch,
    JobStatus,
    NewClip,
    NewComfyServer,
    NewJob,
    NewProject,
    NewScene,
    NewSession,
    PipelineConfigPatch,
    Project,
    ProjectPatch,
    SessionPatch,
    Store,
    open_store,
)
from engine.storage.records import new_id, now
from engine.storage.sql.backend import SqlBackend
from engine.storage.sql.cache import RecordCache
from engine.types import PipelineConfig


async def test_updates_are_read_back(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    config = await store.pipeline_configs.create(PipelineConfig(name="c", kind="fx"))
    server = await store.comfy_servers.create(NewComfyServer(name="s", url="http://s"))
    job = await store.jobs.create(NewJob(workflow="w"))
    await store.projects.get(project.id)
    await store.pipeline_configs.get(config.id)
    await store.comfy_servers.get(server.id)
    await store.jobs.get(job.id)

    renamed = await store.projects.update(project.id, ProjectPatch(name="q"))
    changed = await store.pipeline_configs.update(config.id, PipelineConfigPatch(replicas=3))
    disabled = await store.comfy_servers.update(server.id, ComfyServerPatch(enabled=False))
    running = await store.jobs.update(job.id, JobPatch(status=JobStatus.RUNNING))

    assert await store.projects.get(project.id) == renamed
    assert await store.pipeline_configs.get(config.id) == changed
    assert await store.comfy_servers.get(server.id) == disabled
    assert await store.jobs.get(job.id) == running


async def test_conditional_updates_and_failed_writes_are_read_back(store: Store) -> None:
    session = await store.sessions.create(NewSession(pipeline="fx"))
    await store.sessions.get(session.id)
    moved = await store.sessions.update(session.id, SessionPatch(client="app"))
    assert await store.sessions.get(session.id) == moved
    closed = await store.sessions.finish(session.id, {"frames": 3})
    assert await store.sessions.get(session.id) == closed
    with pytest.raises(Conflict):
        await store.sessions.update(session.id, SessionPatch(client="late"))
    assert await store.sessions.get(session.id) == closed

    taken = await store.projects.create(NewProject(name="taken"))
    other = await store.projects.create(NewProject(name="other"))
    await store.projects.get(other.id)
    with pytest.raises(Conflict):
        await store.projects.update(other.id, ProjectPatch(name=taken.name))
    assert await store.projects.get(other.id) == other


async def test_reorders_and_scene_deletes_are_read_back(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    a, b, c = [await store.scenes.create(project.id, NewScene(name=n)) for n in "abc"]
    clip = await store.clips.create(a.id, NewClip(start=0, duration=1))
    for scene in (a, b, c):
        await store.scenes.get(scene.id)
    await store.clips.get(clip.id)

    await store.scenes.reorder(project.id, [c.id, a.id, b.id])
    positions = [(await store.scenes.get(s.id)).position for s in (a, b, c)]
    assert positions == [1, 2, 0]

    await store.scenes.delete(a.id)
    with pytest.raises(NotFound):
        await store.scenes.get(a.id)
    with pytest.raises(NotFound):
        await store.clips.get(clip.id)
    assert [(await store.scenes.get(s.id)).position for s in (c, b)] == [0, 1]


async def test_cascading_deletes_are_read_back(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scene = await store.scenes.create(project.id, NewScene(name="s"))
    clip = await store.clips.create(scene.id, NewClip(start=0, duration=1))
    media = await store.media.put(b"x", "image/png")
    await store.projects.get(project.id)
    await store.scenes.get(scene.id)
    moved = await store.clips.update(clip.id, ClipPatch(start=4))
    assert await store.clips.get(clip.id) == moved
    await store.media.get(media.id)

    await store.projects.delete(project.id)
    await store.media.delete(media.id)

    for gone in (
        store.projects.get(project.id),
        store.scenes.get(scene.id),
        store.clips.get(clip.id),
        store.media.get(media.id),
    ):
        with pytest.raises(NotFound):
            await gone


async def test_reads_racing_a_write_leave_nothing_stale(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    for round_ in range(20):
        reads = [asyncio.create_task(store.projects.get(project.id)) for _ in range(8)]
        await asyncio.sleep(0)
        updated = await store.projects.update(project.id, ProjectPatch(description=str(round_)))
        await asyncio.gather(*reads)
        assert await store.projects.get(project.id) == updated


async def test_the_cache_is_on_only_for_the_embedded_default(tmp_path: Path) -> None:
    embedded = await open_store(Settings(data_dir=tmp_path / "a"), CollectorRegistry())
    # the same database file, named explicitly by a store with a data dir of its own
    url = f"sqlite+aiosqlite:///{tmp_path / 'a' / 'easel.db'}"
    explicit = await open_store(
        Settings(data_dir=tmp_path / "b", database_url=url), CollectorRegistry()
    )
    try:
        assert isinstance(embedded._backend, SqlBackend)
        assert isinstance(explicit._backend, SqlBackend)
        assert embedded._backend.cache is not None
        assert explicit._backend.cache is None
        # Without the cache, another writer's changes are read back at once.
        project = await embedded.projects.create(NewProject(name="p"))
        await explicit.projects.get(project.id)
        await embedded.projects.update(project.id, ProjectPatch(description="elsewhere"))
        assert (await explicit.projects.get(project.id)).description == "elsewhere"
    finally:
        await embedded.close()
        await explicit.close()


def _project(name: str) -> Project:
    stamp = now()
    return Project(id=new_id(), name=name, created_at=stamp, updated_at=stamp)


def test_the_cache_evicts_the_least_recently_used() -> None:
    cache = RecordCache(2)
    first, second, third = _project("a"), _project("b"), _project("c")
    for record in (first, second):
        cache.put("projects", record, cache.token("projects"))
    assert cache.get("projects", first.id) is first
    cache.put("projects", third, cache.token("projects"))
    assert cache.get("projects", second.id) is None
    assert cache.get("projects", first.id) is first
    assert cache.get("projects", third.id) is third


def test_a_read_from_before_a_write_is_not_kept() -> None:
    cache = RecordCache(10)
    record, other = _project("a"), _project("b")
    token = cache.token("projects")
    cache.invalidate("projects", [other.id])
    cache.put("projects", record, token)
    assert cache.get("projects", record.id) is None
    cache.put("projects", record, cache.token("projects"))
    cache.clear("projects")
    assert cache.get("projects", record.id) is None
    assert cache.token("scenes") == 0


async def test_changing_a_record_read_does_not_change_the_next_read(store: Store) -> None:
    config = await store.pipeline_configs.create(
        PipelineConfig(name="c", kind="fx", options={"a": 1, "n": [1]})
    )
    for _ in range(2):
        read = await store.pipeline_configs.get(config.id)
        read.options["a"] = 999
        read.options["n"].append(2)
    assert (await store.pipeline_configs.get(config.id)).options == {"a": 1, "n": [1]}


async def test_no_read_after_a_commit_returns_the_record_from_before(tmp_path: Path) -> None:
    store = await open_store(Settings(data_dir=tmp_path), CollectorRegistry())
    try:
        backend = store._backend
        assert isinstance(backend, SqlBackend)
        assert backend.cache is not None
        project = await store.projects.create(NewProject(name="p", description="old"))
        await store.projects.get(project.id)
        committed = False

        def on_reset(*_args: object) -> None:
            # A connection goes back to the pool: its transaction is over.
            nonlocal committed
            committed = True

        event.listen(backend._engine.sync_engine.pool, "reset", on_reset)
        stale: list[str] = []

        async def reader() -> None:
            while True:
                after_commit = committed
                description = (await store.projects.get(project.id)).description
                if after_commit and description == "old":
                    stale.append(description)
                if after_commit and description == "new":
                    return
                await asyncio.sleep(0)

        reading = asyncio.create_task(reader())
        await asyncio.sleep(0.01)
        await store.projects.update(project.id, ProjectPatch(description="new"))
        await asyncio.wait_for(reading, 5)
        assert stale == []
    finally:
        await store.close()
