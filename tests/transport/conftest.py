"""A real Easel server on a real socket, and clients for it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from engine.settings import Settings
from transport.app import create_app
from transport.client import Client

ServerFactory = Callable[..., Awaitable["Easel"]]


class Easel:
    """A running server plus an HTTP session to talk REST to it."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.url = str(server.make_url("")).rstrip("/")

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body) as response:
            return response.status, await _json(response)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body) as response:
            return response.status, await _json(response)

    async def session(self, **body: Any) -> dict[str, Any]:
        status, answer = await self.post("/api/v1/sessions", body)
        assert status == 201, answer
        result: dict[str, Any] = answer
        return result

    async def connect(self, **body: Any) -> Client:
        created = await self.session(**body)
        return await Client.connect(
            self.url, token=created["token"], session=created["id"], http=self.http
        )


async def _json(response: aiohttp.ClientResponse) -> Any:
    if response.status == 204:
        return None
    return await response.json(content_type=None)


@pytest.fixture
async def easel_factory(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> AsyncIterator[ServerFactory]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(**overrides: Any) -> Easel:
        settings = Settings(data_dir=tmp_path, **overrides)
        server = await aiohttp_server(create_app(settings))
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Easel(server, http)

    yield make
    for http in sessions:
        await http.close()


@pytest.fixture
async def easel(easel_factory: ServerFactory) -> Easel:
    return await easel_factory()


def png(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()
