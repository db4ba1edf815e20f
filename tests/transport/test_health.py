"""Health, readiness and problem+json over a real aiohttp server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from engine.errors import Conflict
from engine.settings import Settings
from transport.app import create_app
from transport.keys import ENGINE
from transport.problem import PROBLEM_JSON

AiohttpClient = Any


async def test_ready_reports_each_check(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    response = await client.get("/api/v1/ready")
    assert response.status == 200
    body = await response.json()
    assert body["ready"] is True
    assert body["checks"]["supervision"] == {"ok": True, "detail": "ok"}

    async def broken() -> None:
        raise ConnectionError("database unreachable")

    app[ENGINE].add_readiness_check("store", broken)
    response = await client.get("/api/v1/ready")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["store"] == {
        "ok": False,
        "detail": "ConnectionError: database unreachable",
    }


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
