"""What users hand us survives a restart of the engine (embedded SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from engine.metrics import new_registry
from engine.settings import Settings
from engine.storage import NewSession, PipelineConfigPatch, SessionStatus, open_store
from tests.support import EaselServer, running_pg_cluster
from transport.app import ADMIN_KEY_FILE, create_app
from transport.keys import ENGINE


async def call(server: TestServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = str(server.make_url(path))
    key_file = server.app[ENGINE].settings.data_dir / ADMIN_KEY_FILE
    headers = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.request(method, url, json=body) as response,
    ):
        answer = None if response.status == 204 else await response.json(content_type=None)
        return response.status, answer


async def test_pipelines_created_over_rest_come_back_after_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = EaselServer(create_app(settings))
    await first.start_server()
    config = {"name": "sim", "kind": "simulated", "replicas": 2, "options": {"cost_ms": 1}}
    assert (await call(first, "POST", "/api/v1/pipelines", config))[0] == 201
    assert (await call(first, "POST", "/api/v1/pipelines/sim/reload", {"max_batch": 4}))[0] == 200
    await first.close()

    second = EaselServer(create_app(settings))
    await second.start_server()
    status, restored = await call(second, "GET", "/api/v1/pipelines/sim")
    assert status == 200
    assert (restored["kind"], restored["replicas"], restored["max_batch"]) == ("simulated", 2, 4)
    assert restored["options"] == {"cost_ms": 1}
    assert (await call(second, "DELETE", "/api/v1/pipelines/sim"))[0] == 204
    await second.close()

    third = EaselServer(create_app(settings))
    await third.start_server()
    assert (await call(third, "GET", "/api/v1/pipelines/sim"))[0] == 404
    names = [p["name"] for p in (await call(third, "GET", "/api/v1/pipelines"))[1]["items"]]
    assert names == ["imagefx", "passthrough"]  # boot pipelines are not stored
    await third.close()


async def test_session_metadata_and_final_stats_are_stored(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    server = EaselServer(create_app(settings))
    await server.start_server()
    status, created = await call(
        server, "POST", "/api/v1/sessions", {"pipeline": "imagefx", "params": {"effect": "blur"}}
    )
    assert status == 201
    path = f"/api/v1/sessions/{created['id']}"
    assert (await call(server, "PATCH", path, {"params": {"radius": 4}}))[0] == 200
    assert (await call(server, "DELETE", path))[0] == 204
    await server.close()

    store = await open_store(settings, new_registry())
    try:
        stored = await store.sessions.get(created["id"])
    finally:
        await store.close()
    assert stored.pipeline == "imagefx"
    assert stored.params == {"effect": "blur", "radius": 4}
    assert stored.status is SessionStatus.CLOSED
    assert stored.stats["frames_in"] == 0


async def test_a_stored_pipeline_that_cannot_start_can_be_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = EaselServer(create_app(settings))
    await first.start_server()
    created = {"name": "sim", "kind": "simulated"}
    assert (await call(first, "POST", "/api/v1/pipelines", created))[0] == 201
    await first.close()

    store = await open_store(settings, new_registry())
    (stored,) = (await store.pipeline_configs.list()).items
    await store.pipeline_configs.update(
        stored.id, PipelineConfigPatch(options={"crash_on_load": True})
    )
    await store.close()

    second = EaselServer(create_app(settings))
    await second.start_server()  # the broken config is skipped, not fatal
    assert (await call(second, "GET", "/api/v1/pipelines/sim"))[0] == 404
    body = {"name": "sim", "kind": "simulated", "options": {"cost_ms": 2}}
    assert (await call(second, "POST", "/api/v1/pipelines", body))[0] == 201
    await second.close()

    third = EaselServer(create_app(settings))
    await third.start_server()
    status, restored = await call(third, "GET", "/api/v1/pipelines/sim")
    assert (status, restored["options"]) == (200, {"cost_ms": 2})
    await third.close()


async def restart(settings: Settings) -> None:
    """Start an engine on ``settings`` and stop it again."""
    server = EaselServer(create_app(settings))
    await server.start_server()
    await server.close()


async def test_sessions_left_open_by_a_process_that_died_are_closed_at_the_next_start(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    store = await open_store(settings, new_registry())
    try:  # a process that stored its session, then died without closing it
        left = await store.sessions.create(NewSession(pipeline="imagefx"))
    finally:
        await store.close()

    await restart(settings)

    store = await open_store(settings, new_registry())
    try:
        swept = await store.sessions.get(left.id)
    finally:
        await store.close()
    assert swept.status is SessionStatus.CLOSED
    assert swept.end_reason == "engine_restart"


async def test_on_a_shared_postgresql_a_node_closes_only_its_own_sessions_at_start(
    tmp_path: Path,
) -> None:
    with running_pg_cluster() as cluster:
        url = await cluster.create_database()
        node_a, node_b = (
            Settings(data_dir=tmp_path / name, database_url=url, db_auto_migrate=True)
            for name in ("a", "b")
        )
        opened = []
        for node in (node_a, node_b):
            store = await open_store(node, new_registry())
            try:
                opened.append(await store.sessions.create(NewSession(pipeline="imagefx")))
            finally:
                await store.close()

        await restart(node_a)  # node b runs on, its session still open

        store = await open_store(node_b, new_registry())
        try:
            of_a, of_b = [await store.sessions.get(session.id) for session in opened]
        finally:
            await store.close()
    assert (of_a.status, of_a.end_reason) == (SessionStatus.CLOSED, "engine_restart")
    assert of_b == opened[1]
    assert of_b.status is SessionStatus.OPEN
