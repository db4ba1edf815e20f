"""API keys: required on /api/v1 when configured, over REST and both WebSockets."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from engine.storage import NewApiKey
from tests.support import Easel, ServerFactory
from transport.client import Client
from transport.keys import STORE
from transport.protocol import CloseCode, FrameType, decode, encode_hello


@pytest.fixture
async def locked(easel_factory: ServerFactory) -> tuple[Easel, str]:
    easel = await easel_factory(require_api_key=True)
    _, token = await easel.server.app[STORE].api_keys.create(NewApiKey(name="tests"))
    return easel, token


async def status_of(easel: Easel, path: str, token: str | None = None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with easel.http.get(easel.url + path, headers=headers) as response:
        if response.status == 401:
            assert response.content_type == "application/problem+json"
            assert (await response.json())["code"] == "unauthorized"
        return response.status


async def test_rest_needs_a_valid_key_except_health_ready_and_docs(
    locked: tuple[Easel, str],
) -> None:
    easel, token = locked
    assert await status_of(easel, "/api/v1/pipelines") == 401
    assert await status_of(easel, "/api/v1/pipelines", "nope") == 401
    assert await status_of(easel, "/api/v1/pipelines", token.split(".")[0] + ".wrong") == 401
    assert await status_of(easel, "/api/v1/pipelines", token) == 200
    assert await status_of(easel, f"/api/v1/pipelines?token={token}") == 200
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json", "/metrics"):
        assert await status_of(easel, path) == 200


async def test_sockets_take_a_session_token_or_an_api_key(locked: tuple[Easel, str]) -> None:
    easel, token = locked
    headers = {"Authorization": f"Bearer {token}"}
    async with easel.http.post(easel.url + "/api/v1/sessions", json={}, headers=headers) as made:
        assert made.status == 201
        created = await made.json()
    by_session_token = await Client.connect(
        easel.url, token=created["token"], session=created["id"]
    )
    await by_session_token.close()
    by_api_key = await Client.connect(easel.url, token=token, session=created["id"])
    assert by_api_key.welcome.session == created["id"]
    await by_api_key.close()


async def test_the_hello_socket_needs_a_key(locked: tuple[Easel, str]) -> None:
    easel, token = locked
    async with easel.http.ws_connect(easel.url + "/api/v1/ws", protocols=("easel.v1",)) as ws:
        frames = [decode(m.data) async for m in ws if m.type is aiohttp.WSMsgType.BINARY]
        assert [f.header["code"] for f in frames] == ["unauthorized"]
        assert ws.close_code == CloseCode.POLICY
    url = easel.url + f"/api/v1/ws?token={token}"
    async with easel.http.ws_connect(url, protocols=("easel.v1",)) as ws:
        await ws.send_bytes(encode_hello(pipeline="passthrough"))
        assert decode(await ws.receive_bytes()).type is FrameType.WELCOME


def test_apikey_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transport.cli import main

    assert main(["apikey", "create", "deploy", "--data-dir", str(tmp_path)]) == 0
    key_id, _name = capsys.readouterr().out.splitlines()[0].split("\t")
    assert main(["apikey", "create", "deploy", "--data-dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["apikey", "list", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{key_id}\tdeploy\t")
    assert main(["apikey", "revoke", key_id, "--data-dir", str(tmp_path)]) == 0
    assert main(["apikey", "list", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {key_id}"
