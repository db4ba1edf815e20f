"""Browser-safe defaults: JSON bodies need a JSON type, origins are checked (CORS and
WebSocket upgrades), every response carries the security headers, and credentials in
query strings never reach the access log."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from engine.settings import Settings
from tests.support import Easel, ServerFactory, ServerStarter
from transport.app import create_app
from transport.browser import RedactingAccessLogger, redact

EVIL = "https://evil.example"


async def test_a_cross_site_text_plain_post_is_refused(easel: Easel) -> None:
    # what a foreign page can send without a preflight (and with a key it phished)
    for headers in (
        {"Content-Type": "text/plain"},
        {"Content-Type": "text/plain", "Origin": EVIL},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        async with easel.http.post(
            easel.url + "/api/v1/pipelines/passthrough/reload",
            data=b'{"replicas": 2}',
            headers=headers,
        ) as answer:
            assert answer.status in (403, 415), headers
            assert answer.content_type == "application/problem+json"
    async with easel.http.post(
        easel.url + "/api/v1/sessions", data=b"{}", headers={"Content-Type": "text/plain"}
    ) as answer:
        assert answer.status == 415
        assert (await answer.json())["code"] == "unsupported_media_type"
    status, listing = await easel.request("GET", "/api/v1/pipelines/passthrough")
    assert listing["replicas"] == 1  # nothing was reloaded
    assert status == 200


async def test_cors_preflight_answers_only_allowed_origins(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(allowed_origins="https://studio.example")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with easel.http.options(
        easel.url + "/api/v1/sessions", headers={"Origin": "https://studio.example", **preflight}
    ) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == "https://studio.example"
        assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
    async with easel.http.options(
        easel.url + "/api/v1/sessions", headers={"Origin": EVIL, **preflight}
    ) as answer:
        assert answer.status == 403
        assert "Access-Control-Allow-Origin" not in answer.headers
    async with easel.http.get(
        easel.url + "/api/v1/pipelines", headers={"Origin": "https://studio.example"}
    ) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    async with easel.http.get(easel.url + "/api/v1/pipelines", headers={"Origin": EVIL}) as answer:
        assert "Access-Control-Allow-Origin" not in answer.headers
    async with easel.http.post(
        easel.url + "/api/v1/sessions", json={}, headers={"Origin": EVIL}
    ) as answer:
        assert answer.status == 403
        assert (await answer.json())["code"] == "forbidden_origin"


async def _upgrade(easel: Easel, path: str, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    try:
        async with easel.http.ws_connect(
            easel.url + path, protocols=("easel.v1",), headers=headers
        ):
            return 101
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status


async def test_a_foreign_origin_cannot_open_a_socket(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(allowed_origins="https://studio.example")
    created = await easel.session()
    own = easel.url  # the page's own origin (same host and port)
    for path in ("/api/v1/ws", f"/api/v1/sessions/{created['id']}/ws"):
        assert await _upgrade(easel, path, EVIL) == 403, path
        assert await _upgrade(easel, path, "null") == 403, path
        assert await _upgrade(easel, path, None) == 101, path
        assert await _upgrade(easel, path, own) == 101, path
        assert await _upgrade(easel, path, "https://studio.example") == 101, path


async def test_every_response_carries_the_security_headers(easel: Easel) -> None:
    for path in ("/api/v1/pipelines", "/api/v1/nope", "/api/v1/health", "/"):
        async with easel.http.get(easel.url + path) as answer:
            assert answer.headers["X-Content-Type-Options"] == "nosniff", path
            assert answer.headers["X-Frame-Options"] == "DENY", path
            assert answer.headers["Referrer-Policy"] == "no-referrer", path
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], path


def test_redact() -> None:
    assert redact("/api/v1/ws?token=abc.def&x=1") == "/api/v1/ws?token=***&x=1"
    assert redact("/?KEY=s&key=t&resume=r") == "/?KEY=***&key=***&resume=***"
    assert redact("/api/v1/pipelines") == "/api/v1/pipelines"
    # a name written with percent escapes is the same name to the server that reads it
    assert redact("/api/v1/ws?%74oken=SECRET") == "/api/v1/ws?%74oken=***"
    assert redact("/?to%6Ben=s&%4B%45%59=t") == "/?to%6Ben=***&%4B%45%59=***"


async def test_the_access_log_never_holds_a_token(
    easel_server: ServerStarter, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(data_dir=tmp_path), announce=lambda _: None)
    server = await easel_server(app, access_log_class=RedactingAccessLogger)
    token = (tmp_path / "admin.key").read_text().strip()
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with aiohttp.ClientSession() as http:
            async with http.get(str(server.make_url(f"/api/v1/pipelines?token={token}"))) as a:
                assert a.status == 200
            async with http.get(str(server.make_url(f"/?key={token}&x=1"))) as a:
                assert a.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2
    assert all(token not in line and token.split(".")[1] not in line for line in lines)
    assert "/api/v1/pipelines?token=*** " in lines[0]
