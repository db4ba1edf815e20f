"""Health, readiness and problem+json over a real aiohttp server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from engine.errors import Conflict
from engine.settings import Settings
from tests.support import Easel, collect, png
from transport.app import create_app
from transport.keys import ENGINE
from transport.problem import PROBLEM_JSON
from transport.protocol import ContentType

AiohttpClient = Any


OK = {"ok": True, "detail": "ok"}


async def test_ready_reports_each_essential_and_each_pipeline(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    response = await client.get("/api/v1/ready")
    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "ready": True,
        "checks": {"supervision": OK, "event_loop": OK, "store": OK},
        "pipelines": {
            "imagefx": {"state": "ok", "detail": "ok"},
            "passthrough": {"state": "ok", "detail": "ok"},
        },
    }


async def test_a_store_that_is_down_makes_the_instance_unready(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    client: TestClient[Any, Any] = await aiohttp_client(app)

    async def down() -> None:
        raise ConnectionError("database unreachable")

    app[ENGINE].add_readiness_check("store", down)  # in place of the store's own ping
    response = await client.get("/api/v1/ready")
    assert response.status == 503
    body = await response.json()
    assert (body["status"], body["ready"]) == ("unavailable", False)
    assert body["checks"]["store"] == {
        "ok": False,
        "detail": "ConnectionError: database unreachable",
    }


async def test_a_crash_looping_pipeline_degrades_the_instance_but_leaves_it_ready(
    easel: Easel,
) -> None:
    status, _ = await easel.post(
        "/api/v1/pipelines", {"name": "loop", "kind": "simulated", "options": {"cost_ms": 0}}
    )
    assert status == 201
    client = await easel.connect(pipeline="loop", drain="all")
    # Every crash lengthens the restart backoff, so the pipeline soon spends most of its
    # time restarting; each round crashes it once, then asks.
    body: dict[str, Any] = {}
    for seq in range(50):
        await client.send_frame(seq, ContentType.PNG, png(), params={"crash": True})
        await collect(client, 1)
        status, body = await easel.request("GET", "/api/v1/ready")
        assert status == 200, body
        if body["status"] == "degraded":
            break
    assert body["status"] == "degraded"
    assert body["ready"] is True
    assert body["pipelines"]["loop"] == {"state": "degraded", "detail": "restarting"}
    assert body["pipelines"]["passthrough"] == {"state": "ok", "detail": "ok"}
    assert all(check["ok"] for check in body["checks"].values())
    await client.close()


async def test_unknown_route_is_problem_json(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path)))
    response = await client.get("/api/v1/nope")
    assert response.status == 404
    assert response.content_type == PROBLEM_JSON
    body = await response.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404


async def test_engine_errors_and_surprises_become_problem_json(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path, insecure=True))  # routes without roles

    async def conflict(_request: web.Request) -> web.Response:
        raise Conflict("project exists", id="p1")

    async def bug(_request: web.Request) -> web.Response:
        raise ZeroDivisionError("secret internals")

    app.router.add_get("/conflict", conflict)
    app.router.add_get("/bug", bug)
    client = await aiohttp_client(app)
    response = await client.get("/conflict")
    assert response.status == 409
    assert await response.json() == {
        "type": "https://easel.dev/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "project exists",
        "code": "conflict",
        "id": "p1",
    }
    response = await client.get("/bug")
    assert response.status == 500
    text = await response.text()
    assert "secret internals" not in text
    assert "Traceback" not in text
