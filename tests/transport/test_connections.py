"""The connection guard on real sockets: slow and idle clients are cut off, the cap
holds, and normal clients are served while it does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import Counter

from engine.metrics import new_registry
from tests.support import Easel, ServerFactory, collect, eventually, png
from transport.client import Result
from transport.connections import LINGER, Refusal, RefusalLog
from transport.protocol import ContentType

HEAD = b"GET /api/v1/health HTTP/1.1\r\nHost: easel\r\n\r\n"

Socket = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def sockets(easel: Easel, count: int) -> AsyncIterator[list[Socket]]:
    """``count`` raw connections to the server, closed on exit."""
    host, port = easel.server.host, easel.server.port
    assert port is not None
    opened = [await asyncio.open_connection(host, port) for _ in range(count)]
    try:
        yield opened
    finally:
        for _, writer in opened:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent until it closed the connection (fails past ``within``).
    A reset counts as closed: a socket closed with unread bytes in it is reset."""
    async with asyncio.timeout(within):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def trickle(writer: asyncio.StreamWriter, every: float) -> None:
    """A slow client: the request head one byte at a time, never finished."""
    with contextlib.suppress(ConnectionError):
        for byte in HEAD[:-2]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def refusals(easel: Easel) -> dict[str, float]:
    """The refusal counters; retried while the cap is still full of sockets the test
    has closed but the server has not yet seen go."""
    async with asyncio.timeout(10):
        while True:
            async with easel.http.get(easel.url + "/metrics") as response:
                if response.status != 503:
                    assert response.status == 200
                    text = await response.text()
                    break
            await asyncio.sleep(0.05)
    pattern = r'^easel_connections_refused_total\{reason="(\w+)"\} (\S+)$'
    return {reason: float(value) for reason, value in re.findall(pattern, text, re.MULTILINE)}


async def health(easel: Easel) -> int:
    """A normal client: a fresh connection, a request sent at once."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(easel.url + "/api/v1/health") as response,
    ):
        return response.status


async def test_idle_and_slow_connections_are_cut_off_and_logged_once_per_kind(
    easel_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    timeout = 1.0
    easel = await easel_factory(header_timeout=timeout)
    caplog.set_level(logging.WARNING, logger="transport.connections")
    async with sockets(easel, 6) as opened:
        # the first three send nothing; the other three trickle a head
        trickles = [asyncio.create_task(trickle(writer, 0.05)) for _, writer in opened[3:]]
        start = time.monotonic()
        for reader, _ in opened:
            assert await closed_by_server(reader, within=timeout * 3 + 5) == b""
        assert time.monotonic() - start < timeout * 3 + 5
        for task in trickles:
            task.cancel()
    assert await refusals(easel) == {"idle": 3.0, "header_timeout": 3.0}
    logged = [r.getMessage() for r in caplog.records if r.name == "transport.connections"]
    assert len(logged) == 2, logged
    assert any(line.startswith("connection refused (idle)") for line in logged)
    assert any(line.startswith("connection refused (header_timeout)") for line in logged)
    assert await health(easel) == 200  # the server goes on serving


async def test_a_normal_client_is_served_while_idle_and_slow_sockets_fill_the_cap(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(max_connections=20, header_timeout=60)
    async with sockets(easel, 20) as opened:
        trickles = [asyncio.create_task(trickle(writer, 0.2)) for _, writer in opened[10:]]
        await asyncio.sleep(1.5)  # room for them to be waiting longer than EVICT_AFTER
        # each is served; the first in the place of the oldest socket still waiting
        for _ in range(3):
            assert await health(easel) == 200
        assert await closed_by_server(opened[0][0], within=10) == b""
        for task in trickles:
            task.cancel()
    # one, or more when a finished client's slot was not yet free for the next
    assert (await refusals(easel)).get("evicted", 0) >= 1


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_a_503(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(max_connections=3)
    async with sockets(easel, 3) as busy:
        for reader, writer in busy:  # keep-alive connections past their first request
            writer.write(HEAD)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        async with sockets(easel, 1) as ((reader, _writer),):
            answer = await closed_by_server(reader, within=10)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert (await refusals(easel)).get("max_connections", 0) >= 1  # scrapes may add some


async def test_a_websocket_outlives_the_header_timeout(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(header_timeout=0.5)
    client = await easel.connect(pipeline="passthrough", drain="all")
    await asyncio.sleep(2.0)  # several header timeouts: the guard must have stepped aside
    await client.send_frame(1, ContentType.PNG, png())
    (answer,) = await collect(client, 1)
    assert isinstance(answer, Result)
    await client.close()


async def test_a_refusal_kind_is_logged_once_then_summed_up_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = new_registry()
    counter = Counter("refused", "refused", ["reason"], registry=registry)
    refusals = RefusalLog(counter, interval=0.2)
    caplog.set_level(logging.WARNING, logger="transport.connections")
    for _ in range(5):
        refusals.refused(Refusal.IDLE, "sent nothing")
    refusals.refused(Refusal.EVICTED, "made room")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == [
        "connection refused (idle)",
        "connection refused (evicted)",
    ]
    await eventually(lambda: len(caplog.records) == 3, timeout=10)
    assert caplog.records[2].getMessage().startswith("4 more connections refused (idle) since ")
    await asyncio.sleep(1.0)  # a quiet interval (0.2 s) and room: the next refusal is news
    refusals.refused(Refusal.IDLE, "sent nothing")
    assert caplog.records[-1].getMessage().startswith("connection refused (idle): sent nothing")
    assert len(caplog.records) == 4
    assert registry.get_sample_value("refused_total", {"reason": "idle"}) == 6.0


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/projects", "application/json"),
        ("/api/v1/media", "multipart/form-data; boundary=b"),
    ],
)
async def test_a_trickled_body_is_cut_off_with_a_408(
    easel_factory: ServerFactory, path: str, content_type: str
) -> None:
    # head at once, then the body a byte a second: bounded by header_timeout plus the
    # body's size at the minimum rate, then a 408 and the connection closed
    easel = await easel_factory(header_timeout=1.0)
    body = b'{"name": "slow"}' if content_type.startswith("application") else b"--b\r\n" * 8
    head = (
        f"POST {path} HTTP/1.1\r\nHost: easel\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {easel.admin_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    async with sockets(easel, 1) as ((reader, writer),):
        writer.write(head.encode() + body[:1])
        dripping = asyncio.create_task(trickle_bytes(writer, body[1:], every=1.0))
        async with asyncio.timeout(10):
            status = await reader.readline()
            answer = await reader.readuntil(b"}")  # the problem body
        dripping.cancel()
        rest = await closed_by_server(reader, within=LINGER + 5)  # not held by the trickle
    assert status.startswith(b"HTTP/1.1 408"), status
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")
    assert rest == b""


async def trickle_bytes(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            await asyncio.sleep(every)
            writer.write(bytes([byte]))
            await writer.drain()


async def test_blank_lines_before_a_head_do_not_let_a_connection_skip_the_timeout(
    easel_factory: ServerFactory,
) -> None:
    # a parser skips empty lines before a request line: "\r\n\r\n" is no request head
    easel = await easel_factory(header_timeout=1.0, keepalive_timeout=60.0)
    async with sockets(easel, 1) as ((reader, writer),):
        writer.write(b"\r\n\r\n")
        # cut by the header timeout, well before the keep-alive timer's 60 s
        assert await closed_by_server(reader, within=10) == b""
