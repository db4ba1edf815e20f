"""The repository contract, run against every backend (SQLite, PostgreSQL, MongoDB)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from engine.errors import Conflict, Invalid, NotFound, Unauthorized
from engine.storage import (
    ClipPatch,
    ComfyServerPatch,
    JobOutput,
    JobPatch,
    JobStatus,
    NewApiKey,
    NewClip,
    NewComfyServer,
    NewJob,
    NewProject,
    NewScene,
    NewSession,
    PipelineConfigPatch,
    Project,
    ProjectPatch,
    ScenePatch,
    SessionPatch,
    SessionRecord,
    SessionStatus,
    Store,
    projects,
)
from engine.storage.records import new_id, now
from engine.storage.repository import MAX_OFFSET, SESSIONS
from engine.types import PipelineConfig


async def test_created_records_read_back_equal(store: Store) -> None:
    config = await store.pipeline_configs.create(
        PipelineConfig(
            name="sketch", kind="imagefx", max_batch=4, options={"strength": 0.5, "n": [1, 2]}
        )
    )
    session = await store.sessions.create(NewSession(pipeline="sketch", client="web"))
    server = await store.comfy_servers.create(NewComfyServer(name="gpu1", url="http://gpu1:8188"))
    job = await store.jobs.create(NewJob(workflow="txt2img", params={"seed": 3}))
    project = await store.projects.create(NewProject(name="film", description="a film"))
    scene = await store.scenes.create(project.id, NewScene(name="opening"))
    clip = await store.clips.create(scene.id, NewClip(name="c", start=1.5, duration=2.25))
    media = await store.media.put(b"\x89PNG...", "image/png", "a.png")
    key, _ = await store.api_keys.create(NewApiKey(name="ci", scopes=("read", "write")))

    assert await store.pipeline_configs.get(config.id) == config
    assert await store.sessions.get(session.id) == session
    assert await store.comfy_servers.get(server.id) == server
    assert await store.jobs.get(job.id) == job
    assert await store.projects.get(project.id) == project
    assert await store.scenes.get(scene.id) == scene
    assert await store.clips.get(clip.id) == clip
    assert await store.media.get(media.id) == media
    assert await store.api_keys.get(key.id) == key
    assert job.status is JobStatus.QUEUED
    assert clip.project_id == project.id


async def test_missing_records_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.projects.get("nope")
    with pytest.raises(NotFound):
        await store.jobs.update("nope", JobPatch(status=JobStatus.RUNNING))
    with pytest.raises(NotFound):
        await store.comfy_servers.delete("nope")
    with pytest.raises(NotFound):
        await store.scenes.create("nope", NewScene(name="s"))
    with pytest.raises(NotFound):
        await store.clips.create("nope", NewClip(start=0, duration=1))
    with pytest.raises(NotFound):
        await store.media.read("nope")


async def test_duplicates_raise_conflict(store: Store) -> None:
    await store.projects.create(NewProject(name="same"))
    with pytest.raises(Conflict):
        await store.projects.create(NewProject(name="same"))
    await store.pipeline_configs.create(PipelineConfig(name="p", kind="x"))
    with pytest.raises(Conflict):
        await store.pipeline_configs.create(PipelineConfig(name="p", kind="y"))
    await store.comfy_servers.create(NewComfyServer(name="a", url="http://a"))
    with pytest.raises(Conflict):
        await store.comfy_servers.create(NewComfyServer(name="b", url="http://a"))
    other = await store.comfy_servers.create(NewComfyServer(name="c", url="http://c"))
    with pytest.raises(Conflict):
        await store.comfy_servers.update(other.id, ComfyServerPatch(url="http://a"))
    await store.api_keys.create(NewApiKey(name="k"))
    with pytest.raises(Conflict):
        await store.api_keys.create(NewApiKey(name="k"))
    assert (await store.projects.list()).total == 1


async def test_pages_cover_every_record_once_in_creation_order(store: Store) -> None:
    created = [await store.projects.create(NewProject(name=f"p{i}")) for i in range(7)]
    seen: list[Project] = []
    for offset in (0, 3, 6):
        page = await store.projects.list(limit=3, offset=offset)
        assert page.total == 7
        seen.extend(page.items)
    assert [p.id for p in seen] == [p.id for p in created]
    assert (await store.projects.list(limit=3, offset=9)).items == ()
    with pytest.raises(Invalid):
        await store.projects.list(limit=0)
    with pytest.raises(Invalid):
        await store.projects.list(offset=-1)


@pytest.mark.parametrize("offset", [MAX_OFFSET + 1, 2**63, 10**20])
async def test_an_offset_past_the_bound_is_invalid(store: Store, offset: int) -> None:
    await store.projects.create(NewProject(name="p"))
    assert (await store.projects.list(offset=MAX_OFFSET)).items == ()
    with pytest.raises(Invalid):
        await store.projects.list(offset=offset)


async def test_jobs_filter_by_status_and_server(store: Store) -> None:
    server = await store.comfy_servers.create(NewComfyServer(name="gpu", url="http://gpu"))
    jobs = [await store.jobs.create(NewJob(workflow=f"w{i}")) for i in range(4)]
    await store.jobs.update(jobs[0].id, JobPatch(status=JobStatus.RUNNING, server_id=server.id))
    await store.jobs.update(jobs[1].id, JobPatch(status=JobStatus.RUNNING))
    media = await store.media.put(b"out", "image/png")
    done = await store.jobs.update(
        jobs[2].id,
        JobPatch(
            status=JobStatus.SUCCEEDED, server_id=server.id, outputs=(JobOutput(media_id=media.id),)
        ),
    )
    assert done.outputs == (JobOutput(media_id=media.id),)
    assert await store.jobs.get(jobs[2].id) == done

    running = await store.jobs.list(status=JobStatus.RUNNING)
    assert [j.id for j in running.items] == [jobs[0].id, jobs[1].id]
    on_server = await store.jobs.list(server_id=server.id)
    assert [j.id for j in on_server.items] == [jobs[0].id, jobs[2].id]
    both = await store.jobs.list(status=JobStatus.RUNNING, server_id=server.id)
    assert [j.id for j in both.items] == [jobs[0].id]
    assert (await store.jobs.list(status=JobStatus.QUEUED)).total == 1


async def test_patch_leaves_unset_fields_and_clears_nullable_ones(store: Store) -> None:
    job = await store.jobs.create(NewJob(workflow="w", params={"a": 1}))
    failed = await store.jobs.update(job.id, JobPatch(status=JobStatus.FAILED, error="boom"))
    assert (failed.error, failed.params, failed.workflow) == ("boom", {"a": 1}, "w")
    assert failed.updated_at >= job.updated_at
    retried = await store.jobs.update(job.id, JobPatch(status=JobStatus.QUEUED, error=None))
    assert retried.error is None
    config = await store.pipeline_configs.create(PipelineConfig(name="n", kind="x"))
    changed = await store.pipeline_configs.update(config.id, PipelineConfigPatch(replicas=3))
    assert (changed.name, changed.kind, changed.replicas, changed.max_batch) == ("n", "x", 3, None)
    project = await store.projects.create(NewProject(name="old"))
    renamed = await store.projects.update(project.id, ProjectPatch(name="new", description=None))
    assert (renamed.name, renamed.description) == ("new", "")


async def test_pipeline_configs_change_and_filter_by_kind(store: Store) -> None:
    fx = await store.pipeline_configs.create(
        PipelineConfig(name="fx", kind="imagefx", options={"max_pixels": 4})
    )
    sim = await store.pipeline_configs.create(PipelineConfig(name="sim", kind="simulated"))
    batched = await store.pipeline_configs.update(
        fx.id, PipelineConfigPatch(max_batch=8, options={"max_pixels": 9})
    )
    assert (batched.kind, batched.replicas, batched.max_batch) == ("imagefx", 1, 8)
    assert batched.options == {"max_pixels": 9}
    rekinded = await store.pipeline_configs.update(fx.id, PipelineConfigPatch(kind="simulated"))
    assert (rekinded.kind, rekinded.max_batch) == ("simulated", 8)
    default = await store.pipeline_configs.update(fx.id, PipelineConfigPatch(max_batch=None))
    assert default.max_batch is None
    assert await store.pipeline_configs.get(fx.id) == default
    assert (await store.pipeline_configs.list(kind="simulated")).items == (default, sim)
    assert (await store.pipeline_configs.list(kind="imagefx")).total == 0
    with pytest.raises(NotFound):
        await store.pipeline_configs.update("nope", PipelineConfigPatch(replicas=2))


async def test_open_sessions_take_new_params_and_client(store: Store) -> None:
    session = await store.sessions.create(NewSession(pipeline="fx", client="web", params={"a": 1}))
    changed = await store.sessions.update(session.id, SessionPatch(params={"a": 2, "b": [3]}))
    assert (changed.params, changed.client) == ({"a": 2, "b": [3]}, "web")
    assert changed.updated_at >= session.updated_at
    moved = await store.sessions.update(session.id, SessionPatch(client="app"))
    assert (moved.params, moved.client) == ({"a": 2, "b": [3]}, "app")
    assert await store.sessions.get(session.id) == moved
    with pytest.raises(NotFound):
        await store.sessions.update("nope", SessionPatch(params={}))
    closed = await store.sessions.finish(session.id, {"frames": 1})
    with pytest.raises(Conflict):
        await store.sessions.update(session.id, SessionPatch(params={"a": 3}))
    assert await store.sessions.get(session.id) == closed


async def test_sessions_finish_once_with_stats(store: Store) -> None:
    first = await store.sessions.create(NewSession(pipeline="a", params={"a": 1}))
    await store.sessions.create(NewSession(pipeline="b"))
    closed = await store.sessions.finish(first.id, {"frames": 120, "fps": 29.5}, params={"a": 2})
    assert closed.status is SessionStatus.CLOSED
    assert closed.stats == {"frames": 120, "fps": 29.5}
    assert closed.params == {"a": 2}
    assert await store.sessions.get(first.id) == closed
    assert closed.ended_at is not None
    with pytest.raises(Conflict):
        await store.sessions.finish(first.id, {})
    open_ = await store.sessions.list(status=SessionStatus.OPEN)
    assert [s.pipeline for s in open_.items] == ["b"]
    assert (await store.sessions.list(pipeline="a")).items == (closed,)


async def _stored_session(store: Store, node_id: str | None) -> SessionRecord:
    """An open session stored by another node (or, with ``None``, before sessions
    recorded their node)."""
    stamp = now()
    record = SessionRecord(
        id=new_id(), created_at=stamp, updated_at=stamp, pipeline="p", node_id=node_id
    )
    await store._backend.table(SESSIONS).insert(record)
    return record


async def test_sessions_record_the_node_that_opened_them(store: Store) -> None:
    first = await store.sessions.create(NewSession(pipeline="a"))
    second = await store.sessions.create(NewSession(pipeline="b"))
    assert first.node_id is not None
    assert second.node_id == first.node_id
    assert (await store.sessions.get(first.id)).node_id == first.node_id


async def test_sessions_left_open_by_this_node_or_no_node_close_at_its_start(
    store: Store,
) -> None:
    left = await store.sessions.create(NewSession(pipeline="left"))
    ended = await store.sessions.finish(
        (await store.sessions.create(NewSession(pipeline="ended"))).id, {"frames": 3}
    )
    nodeless = await _stored_session(store, None)
    elsewhere = await _stored_session(store, "another-node")
    assert (await store.sessions.get(left.id)).end_reason is None

    assert await store.sessions.close_abandoned() == 2

    for swept in (await store.sessions.get(left.id), await store.sessions.get(nodeless.id)):
        assert swept.status is SessionStatus.CLOSED
        assert swept.end_reason == "engine_restart"
        assert swept.ended_at is not None
        assert swept.updated_at == swept.ended_at
    assert await store.sessions.get(ended.id) == ended
    assert ended.end_reason is None
    assert await store.sessions.get(elsewhere.id) == elsewhere
    assert await store.sessions.close_abandoned() == 0
    with pytest.raises(Conflict):  # closed, like a session that finished
        await store.sessions.finish(left.id, {})


async def test_scenes_keep_a_dense_reorderable_order(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    a, b, c = [await store.scenes.create(project.id, NewScene(name=n)) for n in "abc"]
    assert [s.position for s in (a, b, c)] == [0, 1, 2]

    reordered = await store.scenes.reorder(project.id, [c.id, a.id, b.id])
    assert [(s.name, s.position) for s in reordered] == [("c", 0), ("a", 1), ("b", 2)]
    listed = await store.scenes.list(project.id)
    assert [s.name for s in listed.items] == ["c", "a", "b"]

    with pytest.raises(Invalid):
        await store.scenes.reorder(project.id, [c.id, a.id])
    with pytest.raises(Invalid):
        await store.scenes.reorder(project.id, [c.id, a.id, a.id])

    await store.scenes.delete(a.id)
    listed = await store.scenes.list(project.id)
    assert [(s.name, s.position) for s in listed.items] == [("c", 0), ("b", 1)]
    renamed = await store.scenes.update(b.id, ScenePatch(name="bee"))
    assert (renamed.name, renamed.position) == ("bee", 1)


async def test_clips_sit_on_a_scene_timeline(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scene = await store.scenes.create(project.id, NewScene(name="s"))
    media = await store.media.put(b"frames", "video/mp4")
    late = await store.clips.create(scene.id, NewClip(start=5, duration=1, media_id=media.id))
    early = await store.clips.create(scene.id, NewClip(start=0.5, duration=2))
    page = await store.clips.list(scene_id=scene.id)
    assert [c.id for c in page.items] == [early.id, late.id]
    moved = await store.clips.update(early.id, ClipPatch(start=9))
    assert (moved.start, moved.duration) == (9, 2)
    assert [c.id for c in (await store.clips.list(project_id=project.id)).items] == [
        late.id,
        early.id,
    ]
    with pytest.raises(NotFound):
        await store.clips.create(scene.id, NewClip(start=0, duration=1, media_id="missing"))
    with pytest.raises(NotFound):
        await store.clips.update(late.id, ClipPatch(media_id="missing"))


async def test_deleting_a_project_deletes_its_scenes_and_clips(store: Store) -> None:
    doomed = await store.projects.create(NewProject(name="doomed"))
    kept = await store.projects.create(NewProject(name="kept"))
    scene = await store.scenes.create(doomed.id, NewScene(name="s"))
    await store.clips.create(scene.id, NewClip(start=0, duration=1))
    kept_scene = await store.scenes.create(kept.id, NewScene(name="k"))
    kept_clip = await store.clips.create(kept_scene.id, NewClip(start=0, duration=1))

    await store.projects.delete(doomed.id)

    with pytest.raises(NotFound):
        await store.projects.get(doomed.id)
    with pytest.raises(NotFound):
        await store.scenes.get(scene.id)
    assert (await store.clips.list(project_id=doomed.id)).total == 0
    assert (await store.clips.list()).items == (kept_clip,)
    assert (await store.scenes.list(kept.id)).items == (kept_scene,)


async def test_deleting_a_scene_deletes_its_clips(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scene = await store.scenes.create(project.id, NewScene(name="s"))
    clip = await store.clips.create(scene.id, NewClip(start=0, duration=1))
    await store.scenes.delete(scene.id)
    with pytest.raises(NotFound):
        await store.clips.get(clip.id)


async def test_media_bytes_round_trip_and_go_with_their_record(store: Store) -> None:
    data = bytes(range(256)) * 40
    media = await store.media.put(data, "application/octet-stream", "blob.bin")
    assert (media.size, media.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await store.media.read(media.id) == data
    assert (await store.media.list(content_type="application/octet-stream")).items == (media,)
    await store.media.delete(media.id)
    with pytest.raises(NotFound):
        await store.media.read(media.id)
    with pytest.raises(NotFound):
        await store.media.delete(media.id)


async def test_api_keys_store_only_a_hash_and_verify(store: Store) -> None:
    key, token = await store.api_keys.create(NewApiKey(name="ops", scopes=("admin",)))
    secret = token.split(".", 1)[1]
    assert secret not in key.model_dump_json()
    assert await store.api_keys.verify(token) == key
    messages = set()
    for bad in (token + "x", key.id + ".wrong", "nodot", "missing." + secret, ""):
        with pytest.raises(Unauthorized) as refused:
            await store.api_keys.verify(bad)
        messages.add(str(refused.value))
    # Unknown id and wrong secret read the same: no probing for key ids.
    assert len(messages) == 1
    await store.api_keys.delete(key.id)
    with pytest.raises(Unauthorized):
        await store.api_keys.verify(token)


async def test_ping_and_operation_metrics(store: Store, registry: CollectorRegistry) -> None:
    await store.ping()
    await store.projects.create(NewProject(name="p"))
    with pytest.raises(Conflict):
        await store.projects.create(NewProject(name="p"))
    labels = {"operation": "projects.create"}
    assert registry.get_sample_value("easel_db_query_seconds_count", labels) == 2
    conflict = {"operation": "projects.create", "code": "conflict"}
    assert registry.get_sample_value("easel_db_errors_total", conflict) == 1
    assert registry.get_sample_value("easel_db_pool_checked_out") == 0
    assert (registry.get_sample_value("easel_db_pool_size") or 0) > 0
    assert (registry.get_sample_value("easel_db_pool_wait_seconds_count") or 0) > 0


@pytest.mark.parametrize("record_id", ["ab\x00cd", "\ud800", "é" * 40])
async def test_ids_no_record_can_have_are_not_found(store: Store, record_id: str) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scene = await store.scenes.create(project.id, NewScene(name="s"))
    with pytest.raises(NotFound):
        await store.projects.get(record_id)
    with pytest.raises(NotFound):
        await store.projects.update(record_id, ProjectPatch(description="x"))
    with pytest.raises(NotFound):
        await store.projects.delete(record_id)
    with pytest.raises(NotFound):
        await store.scenes.create(record_id, NewScene(name="s"))
    with pytest.raises(NotFound):
        await store.clips.create(scene.id, NewClip(start=0, duration=1, media_id="m\x00"))
    with pytest.raises(Unauthorized):
        await store.api_keys.verify(f"{record_id}.secret")


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "\ud800", float("nan"), float("inf"), 2**63, {"k\x00": 1}, [1, [float("-inf")]]],
    ids=["nul", "surrogate", "nan", "inf", "int65", "nul-key", "nested-inf"],
)
async def test_values_some_backend_cannot_store_are_invalid_everywhere(
    store: Store, value: object
) -> None:
    project = await store.projects.create(NewProject(name="p"))
    session = await store.sessions.create(NewSession(pipeline="p"))
    with pytest.raises(Invalid):
        await store.pipeline_configs.create(
            PipelineConfig(name="c", kind="k", options={"v": value})
        )
    with pytest.raises(Invalid):
        await store.sessions.update(session.id, SessionPatch(params={"v": value}))
    with pytest.raises(Invalid):
        await store.sessions.finish(session.id, {"v": value})
    if isinstance(value, str):
        with pytest.raises(Invalid):
            await store.projects.update(project.id, ProjectPatch(description=value))
        with pytest.raises(Invalid):
            await store.media.put(b"x", "image/png", value)
    assert (await store.pipeline_configs.list()).total == 0
    assert (await store.media.list()).total == 0
    assert await store.projects.get(project.id) == project


async def test_text_longer_than_its_column_is_invalid_everywhere(store: Store) -> None:
    with pytest.raises(Invalid):
        await store.media.put(b"x", "image/png", "f" * 256)
    assert (await store.media.put(b"x", "image/png", "f" * 255)).filename == "f" * 255
    for too_long in (
        lambda: NewSession(pipeline="p", client="c" * 201),
        lambda: NewSession(pipeline="p", drain="d" * 33),
        lambda: NewJob(workflow="w", server_id="s" * 33),
        lambda: NewClip(name="n" * 201, start=0, duration=1),
    ):
        with pytest.raises(ValidationError):
            too_long()


async def test_concurrent_scene_creates_take_distinct_positions(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scenes = await asyncio.gather(
        *(store.scenes.create(project.id, NewScene(name=f"s{i}")) for i in range(5))
    )
    assert sorted(s.position for s in scenes) == [0, 1, 2, 3, 4]
    listed = await store.scenes.list(project.id)
    assert [s.position for s in listed.items] == [0, 1, 2, 3, 4]


async def test_concurrent_scene_deletes_and_create_keep_positions_dense(store: Store) -> None:
    project = await store.projects.create(NewProject(name="p"))
    scenes = [await store.scenes.create(project.id, NewScene(name=f"s{i}")) for i in range(6)]
    await asyncio.gather(
        store.scenes.delete(scenes[1].id),
        store.scenes.delete(scenes[3].id),
        store.scenes.create(project.id, NewScene(name="new")),
        store.scenes.delete(scenes[4].id),
    )
    listed = await store.scenes.list(project.id)
    assert [s.position for s in listed.items] == [0, 1, 2, 3]
    assert [s.name for s in listed.items][:3] == ["s0", "s2", "s5"]


async def test_a_project_holds_at_most_max_scenes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projects, "MAX_SCENES", 3)
    project = await store.projects.create(NewProject(name="p"))
    scenes = [await store.scenes.create(project.id, NewScene(name=f"s{i}")) for i in range(3)]
    with pytest.raises(Invalid):
        await store.scenes.create(project.id, NewScene(name="one too many"))
    assert (await store.scenes.list(project.id)).total == 3
    reordered = await store.scenes.reorder(project.id, [s.id for s in reversed(scenes)])
    assert [s.name for s in reordered] == ["s2", "s1", "s0"]


async def test_a_child_created_while_its_parent_is_deleted_does_not_survive(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The parent goes right after the check before the insert: the window a
    # concurrent delete has on MongoDB, which has no foreign keys.
    project = await store.projects.create(NewProject(name="p"))
    scene = await store.scenes.create(project.id, NewScene(name="s"))

    def deleted_after_check(table: Any, delete: Any) -> None:
        get = table.get
        calls = 0

        async def checked_then_deleted(record_id: str) -> Any:
            nonlocal calls
            record = await get(record_id)
            calls += 1
            if calls == 1:
                await delete(record_id)
            return record

        monkeypatch.setattr(table, "get", checked_then_deleted)

    deleted_after_check(store.clips._scenes, store.scenes.delete)
    with pytest.raises(NotFound):
        await store.clips.create(scene.id, NewClip(start=0, duration=1))
    assert (await store.clips.list(scene_id=scene.id)).total == 0

    deleted_after_check(store.scenes._projects, store.projects.delete)
    with pytest.raises(NotFound):
        await store.scenes.create(project.id, NewScene(name="orphan"))
    assert (await store.scenes.list(project.id)).total == 0


def _media_files(store: Store) -> list[Path]:
    return [path for path in store.media._files.root.rglob("*") if path.is_file()]


async def test_a_cancelled_media_put_leaves_no_file_and_no_record(store: Store) -> None:
    for delay in (0, 0.001, 0.005, 0.02):
        put = asyncio.create_task(store.media.put(b"x" * (16 * 1024 * 1024), "video/mp4"))
        await asyncio.sleep(delay)
        put.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await put
        stored = await store.media.list()
        assert [path.name for path in _media_files(store)] == [m.id for m in stored.items]
        for media in stored.items:
            await store.media.delete(media.id)
    assert _media_files(store) == []


async def test_a_media_put_cancelled_after_its_insert_keeps_its_bytes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.media._table
    insert = table.insert

    async def inserted_then_cancelled(record: Any) -> None:
        await insert(record)
        raise asyncio.CancelledError

    monkeypatch.setattr(table, "insert", inserted_then_cancelled)
    with pytest.raises(asyncio.CancelledError):
        await store.media.put(b"kept", "image/png")
    (media,) = (await store.media.list()).items
    assert await store.media.read(media.id) == b"kept"


# -- durable ComfyUI jobs ------------------------------------------------------------


async def test_servers_keep_their_tags(store: Store) -> None:
    server = await store.comfy_servers.create(
        NewComfyServer(name="gpu", url="http://gpu", max_jobs=2, tags=("sdxl", "fast"))
    )
    assert server.tags == ("sdxl", "fast")
    assert await store.comfy_servers.get(server.id) == server
    changed = await store.comfy_servers.update(server.id, ComfyServerPatch(tags=("slow",)))
    assert (await store.comfy_servers.get(server.id)).tags == changed.tags == ("slow",)


async def test_a_job_keeps_its_graph_and_lists_in_priority_order(store: Store) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "color": 0}}}
    late = await store.jobs.create(NewJob(workflow="w", prompt=graph, priority=5))
    urgent = await store.jobs.create(NewJob(workflow="w", prompt=graph, priority=-1))
    normal = await store.jobs.create(NewJob(workflow="w", prompt=graph))
    assert await store.jobs.get(late.id) == late
    assert late.prompt == graph
    queued = await store.jobs.list(status=JobStatus.QUEUED)
    assert [job.id for job in queued.items] == [urgent.id, normal.id, late.id]


async def test_an_idempotency_key_returns_the_first_job(store: Store) -> None:
    first, created = await store.jobs.submit(NewJob(workflow="w", idempotency_key="k1"))
    again, created_again = await store.jobs.submit(NewJob(workflow="other", idempotency_key="k1"))
    assert (created, created_again) == (True, False)
    assert again == first
    keyless = [await store.jobs.submit(NewJob(workflow="w")) for _ in range(2)]
    assert all(made for _, made in keyless)


async def test_project_names_are_unique_per_owner(store: Store) -> None:
    alice = await store.projects.create(NewProject(name="x"), owner="alice")
    bob = await store.projects.create(NewProject(name="x"), owner="bob")
    unowned = await store.projects.create(NewProject(name="x"))
    with pytest.raises(Conflict):
        await store.projects.create(NewProject(name="x"), owner="alice")
    with pytest.raises(Conflict):
        await store.projects.create(NewProject(name="x"))
    other = await store.projects.create(NewProject(name="y"), owner="bob")
    with pytest.raises(Conflict):
        await store.projects.update(other.id, ProjectPatch(name="x"))
    assert (await store.projects.update(other.id, ProjectPatch(name="z"))).name == "z"
    owners = [p.owner for p in (await store.projects.list()).items]
    assert owners == ["alice", "bob", None, "bob"]
    assert [p.id for p in (await store.projects.list(owner="alice")).items] == [alice.id]
    assert {bob.owner, unowned.owner} == {"bob", None}


async def test_an_idempotency_key_is_its_owners_own(store: Store) -> None:
    alice, made = await store.jobs.submit(NewJob(workflow="w", idempotency_key="k", owner="alice"))
    bob, made_bob = await store.jobs.submit(NewJob(workflow="w", idempotency_key="k", owner="bob"))
    unowned, made_unowned = await store.jobs.submit(NewJob(workflow="w", idempotency_key="k"))
    assert (made, made_bob, made_unowned) == (True, True, True)
    assert len({alice.id, bob.id, unowned.id}) == 3
    assert await store.jobs.submit(NewJob(workflow="v", idempotency_key="k", owner="bob")) == (
        bob,
        False,
    )
    assert await store.jobs.submit(NewJob(workflow="v", idempotency_key="k")) == (unowned, False)
    assert [j.id for j in (await store.jobs.list(owner="alice")).items] == [alice.id]


async def test_unfinished_jobs_are_counted_per_owner(store: Store) -> None:
    jobs = [await store.jobs.create(NewJob(workflow="w", owner="alice")) for _ in range(4)]
    await store.jobs.create(NewJob(workflow="w", owner="bob"))
    await store.jobs.swap(jobs[0], status=JobStatus.DISPATCHED)
    await store.jobs.swap(jobs[1], status=JobStatus.RUNNING)
    await store.jobs.swap(jobs[2], status=JobStatus.SUCCEEDED)
    assert await store.jobs.count_unfinished("alice") == 3
    assert await store.jobs.count_unfinished("bob") == 1
    assert await store.jobs.count_unfinished(None) == 0


async def test_the_oldest_queued_job_is_the_one_queued_longest_ago(store: Store) -> None:
    assert await store.jobs.oldest_queued() is None
    low = await store.jobs.create(NewJob(workflow="w0", priority=9))  # last in dispatch order
    high = await store.jobs.create(NewJob(workflow="w1", priority=0))
    assert await store.jobs.oldest_queued() == low.updated_at
    requeued = await store.jobs.swap(low, status=JobStatus.DISPATCHED)
    assert await store.jobs.oldest_queued() == high.updated_at
    again = await store.jobs.swap(requeued, status=JobStatus.QUEUED)  # queued anew: waits less
    assert await store.jobs.oldest_queued() == high.updated_at
    await store.jobs.swap(high, status=JobStatus.CANCELLED)
    assert await store.jobs.oldest_queued() == again.updated_at


async def test_swap_applies_only_to_the_version_read(store: Store) -> None:
    job = await store.jobs.create(NewJob(workflow="w"))
    claimed = await store.jobs.swap(
        job, status=JobStatus.DISPATCHED, lease_owner="node-a", slot="s1/0", attempts=1
    )
    assert (claimed.version, claimed.lease_owner, claimed.attempts) == (1, "node-a", 1)
    assert await store.jobs.get(job.id) == claimed
    with pytest.raises(Conflict):
        await store.jobs.swap(job, lease_owner="node-b")
    assert (await store.jobs.get(job.id)).lease_owner == "node-a"
    released = await store.jobs.swap(claimed, status=JobStatus.QUEUED, slot=None)
    assert released.slot is None
    with pytest.raises(NotFound):
        await store.jobs.swap(job.model_copy(update={"id": "nope"}), status=JobStatus.FAILED)


async def test_a_slot_is_held_by_one_job_at_a_time(store: Store) -> None:
    jobs = [await store.jobs.create(NewJob(workflow=f"w{i}")) for i in range(3)]
    held = await store.jobs.swap(jobs[0], slot="gpu/0")
    with pytest.raises(Conflict):
        await store.jobs.swap(jobs[1], slot="gpu/0")
    await store.jobs.swap(jobs[1], slot="gpu/1")
    await store.jobs.swap(held, slot=None)
    await store.jobs.swap(jobs[2], slot="gpu/0")
    slots = sorted(str(job.slot) for job in (await store.jobs.list()).items)
    assert slots == ["None", "gpu/0", "gpu/1"]
