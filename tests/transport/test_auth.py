"""Auth on by default: roles, the first-start admin key, keys over REST and the CLI,
revocation across processes, session tokens, ``insecure``."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.settings import Settings, SettingsError, load_settings
from tests.support import EASEL, ROOT, Easel, ServerFactory, ServerStarter
from transport.app import ADMIN_KEY_FILE, create_app
from transport.auth import Role, role_of
from transport.client import Client
from transport.protocol import CloseCode, FrameType, decode, encode_hello

PROBLEM = "application/problem+json"


async def call(
    easel: Easel,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    """A request with exactly ``token`` (none: no credentials at all)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, easel.url + path, headers=headers, json=body) as answer,
    ):
        if answer.status in (401, 403):
            assert answer.content_type == PROBLEM
        if answer.status == 204:
            return answer.status, None
        if answer.content_type.endswith("json"):
            return answer.status, await answer.json(content_type=None)
        return answer.status, await answer.read()


async def new_key(easel: Easel, name: str, role: str = "client") -> tuple[str, str]:
    """(key id, token) of a fresh key, issued over REST by the admin."""
    status, made = await easel.post("/api/v1/keys", {"name": name, "role": role})
    assert status == 201, made
    return made["id"], made["token"]


async def test_rest_needs_a_valid_key_except_health_ready_and_docs(easel: Easel) -> None:
    token = easel.admin_key
    assert token is not None
    assert (await call(easel, "GET", "/api/v1/pipelines"))[0] == 401
    status, problem = await call(easel, "GET", "/api/v1/pipelines", "nope")
    assert (status, problem["code"]) == (401, "unauthorized")
    assert (await call(easel, "GET", "/api/v1/pipelines", token.split(".")[0] + ".x"))[0] == 401
    assert (await call(easel, "GET", "/api/v1/pipelines", token))[0] == 200
    assert (await call(easel, "GET", f"/api/v1/pipelines?token={token}"))[0] == 200
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json", "/"):
        assert (await call(easel, "GET", path))[0] == 200
    assert (await call(easel, "GET", "/metrics"))[0] == 401


async def test_roles(easel: Easel) -> None:
    _, client = await new_key(easel, "app")
    _, metrics = await new_key(easel, "prometheus", "metrics")
    assert (await call(easel, "GET", "/api/v1/pipelines", client))[0] == 200
    status, problem = await call(easel, "POST", "/api/v1/pipelines", client, {"name": "x"})
    assert (status, problem["code"]) == (403, "forbidden")
    assert (await call(easel, "DELETE", "/api/v1/pipelines/passthrough", client))[0] == 403
    assert (await call(easel, "GET", "/api/v1/keys", client))[0] == 403
    assert (await call(easel, "POST", "/api/v1/keys", client, {"name": "me2"}))[0] == 403
    assert (await call(easel, "GET", "/metrics", client))[0] == 403
    assert (await call(easel, "GET", "/metrics", metrics))[0] == 200
    assert (await call(easel, "GET", "/api/v1/sessions", metrics))[0] == 403
    assert (await call(easel, "GET", "/api/v1/pipelines", metrics))[0] == 403
    assert (await call(easel, "GET", "/metrics", easel.admin_key))[0] == 200


async def test_first_start_creates_an_admin_key_once(
    tmp_path: Path, easel_server: ServerStarter
) -> None:
    said: list[str] = []
    settings = Settings(data_dir=tmp_path, port=8123)
    server = await easel_server(create_app(settings, announce=said.append))
    key_file = tmp_path / ADMIN_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = key_file.read_text().strip()
    assert len(said) == 1
    assert f"http://127.0.0.1:8123/#key={token}" in said[0]
    url = str(server.make_url("/api/v1/keys"))
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as answer:
        listing = await answer.json()
    assert [(k["name"], k["role"]) for k in listing["items"]] == [("admin", "admin")]
    assert "token" not in listing["items"][0]
    assert "secret_hash" not in listing["items"][0]
    await server.close()
    again = await easel_server(create_app(settings, announce=said.append))
    assert len(said) == 1  # keys exist: nothing created, nothing printed
    assert key_file.read_text().strip() == token
    await again.close()


async def test_keys_over_rest_show_the_token_once_and_revoke_at_once(easel: Easel) -> None:
    key_id, token = await new_key(easel, "app")
    assert (await call(easel, "GET", "/api/v1/sessions", token))[0] == 200
    status, listing = await easel.request("GET", "/api/v1/keys")
    assert status == 200
    mine = [k for k in listing["items"] if k["id"] == key_id]
    assert mine == [
        {"id": key_id, "name": "app", "role": "client", "created_at": mine[0]["created_at"]}
    ]
    assert (await easel.request("DELETE", f"/api/v1/keys/{key_id}"))[0] == 204
    assert (await call(easel, "GET", "/api/v1/sessions", token))[0] == 401
    assert (await easel.post("/api/v1/keys", {"name": "x", "role": "root"}))[0] == 422


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EASEL, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


async def test_cli_revocation_is_honoured_by_a_running_server(
    tmp_path: Path, easel_factory: ServerFactory
) -> None:
    easel = await easel_factory()  # embedded SQLite, record cache on
    made = _cli("apikey", "create", "app", "--role", "client", "--data-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    key_id, name, role = made.stdout.splitlines()[0].split("\t")
    token = made.stdout.splitlines()[1]
    assert (name, role) == ("app", "client")
    for _ in range(3):  # warm any cache the server keeps
        assert (await call(easel, "GET", "/api/v1/sessions", token))[0] == 200
    revoked = _cli("apikey", "revoke", key_id, "--data-dir", str(tmp_path))
    assert revoked.returncode == 0, revoked.stderr
    assert (await call(easel, "GET", "/api/v1/sessions", token))[0] == 401
    listed = _cli("apikey", "list", "--data-dir", str(tmp_path))
    assert key_id not in listed.stdout
    assert "\tadmin\tadmin\t" in listed.stdout


def test_every_route_declares_a_role(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = list(app.router.routes())
    assert len(routes) > 30
    undeclared = [r.resource.canonical for r in routes if role_of(r.handler) is None]  # type: ignore[union-attr]
    assert undeclared == []
    public = {r.resource.canonical for r in routes if role_of(r.handler).role is Role.PUBLIC}  # type: ignore[union-attr]
    assert public == {
        "/",
        "/static/{path}",
        "/api/v1/health",
        "/api/v1/ready",
        "/api/v1/openapi.json",
    }


async def test_a_session_token_opens_only_its_own_session(easel: Easel) -> None:
    one = await easel.session()
    two = await easel.session()
    client = await Client.connect(easel.url, token=one["token"], session=one["id"])
    await client.close()
    async with aiohttp.ClientSession() as http:
        url = easel.url + f"/api/v1/sessions/{two['id']}/ws"
        headers = {"Authorization": f"Bearer {one['token']}"}
        async with http.ws_connect(url, protocols=("easel.v1",), headers=headers) as ws:
            frames = [decode(m.data) async for m in ws if m.type is aiohttp.WSMsgType.BINARY]
            assert [f.header["code"] for f in frames] == ["unauthorized"]
            assert ws.close_code == CloseCode.POLICY
    # nor is it an API key on REST
    assert (await call(easel, "GET", f"/api/v1/sessions/{one['id']}", one["token"]))[0] == 401


async def _refusal(
    easel: Easel, path: str, headers: dict[str, str]
) -> tuple[list[str], int | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(easel.url + path, protocols=("easel.v1",), headers=headers) as ws,
    ):
        await ws.send_bytes(encode_hello(pipeline="passthrough"))
        frames = [decode(m.data) async for m in ws if m.type is aiohttp.WSMsgType.BINARY]
        return [f.header["code"] for f in frames], ws.close_code


async def test_sockets_refuse_missing_bad_and_non_ascii_tokens(easel: Easel) -> None:
    created = await easel.session()
    paths = ("/api/v1/ws", f"/api/v1/sessions/{created['id']}/ws")
    for path in paths:
        for headers in (
            {},
            {"Authorization": "Bearer nope"},
            {"Authorization": "Bearer t\u00f6k\u00e9n.\u00e9"},
            {"Authorization": f"Bearer {created['token'][:-2]}\u00e9\u00e9"},
        ):
            codes, close = await _refusal(easel, path, headers)
            assert (codes, close) == (["unauthorized"], CloseCode.POLICY), (path, headers)
    _, metrics = await new_key(easel, "prometheus", "metrics")
    codes, close = await _refusal(easel, "/api/v1/ws", {"Authorization": f"Bearer {metrics}"})
    assert (codes, close) == (["forbidden"], CloseCode.POLICY)
    async with aiohttp.ClientSession() as http:
        url = easel.url + f"/api/v1/ws?token={easel.admin_key}"
        async with http.ws_connect(url, protocols=("easel.v1",)) as ws:
            await ws.send_bytes(encode_hello(pipeline="passthrough"))
            assert decode(await ws.receive_bytes()).type is FrameType.WELCOME


async def test_an_encoded_slash_in_a_session_id_does_not_skip_the_check(easel: Easel) -> None:
    created = await easel.session()
    for path in (
        f"/api/v1/sessions/{created['id']}%2Fws",
        f"/api/v1/sessions/{created['id']}%2F..%2F{created['id']}",
        f"/api/v1/sessions/x%2F..%2F{created['id']}",
    ):
        status, body = await call(easel, "GET", path)
        assert status in (401, 404), (path, status)
        assert created["token"] not in str(body)
        status, _ = await call(easel, "DELETE", path)
        assert status in (401, 404)
    assert (await easel.request("GET", f"/api/v1/sessions/{created['id']}"))[0] == 200


async def test_insecure_turns_auth_off_loudly_and_only_on_loopback(
    easel_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SettingsError, match="insecure"):
        load_settings({"insecure": True, "host": "0.0.0.0"}, environ={})
    with pytest.raises(SettingsError, match="insecure"):
        load_settings({}, environ={"EASEL_INSECURE": "1", "EASEL_HOST": "192.168.1.5"})
    assert load_settings({}, environ={"EASEL_INSECURE": "true", "EASEL_HOST": "::1"}).insecure
    with caplog.at_level(logging.WARNING):
        easel = await easel_factory(insecure=True)
    assert easel.admin_key is None
    assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)
    assert (await call(easel, "GET", "/api/v1/keys"))[0] == 200
    assert (await call(easel, "POST", "/api/v1/sessions", None, {}))[0] == 201


def test_serve_refuses_insecure_on_a_public_bind(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*EASEL, "serve", "--insecure", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "EASEL_PORT": "0"},
    )
    assert refused.returncode == 2
    assert "insecure" in refused.stderr
    assert "loopback" in refused.stderr
