"""The protocol client against a small fake server built from the protocol builders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from transport import protocol as p
from transport.client import (
    Client,
    ConnectionClosed,
    HandshakeError,
    Result,
    ServerError,
)
from transport.protocol import (
    ContentType,
    DrainStrategy,
    ErrorCode,
    EventName,
    FrameTimings,
    Limits,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

FAIL_SEQ = 13


async def fake_session(request: web.Request) -> web.StreamResponse:
    """Just enough of the server side of protocol v1 to exercise the client."""
    if request.match_info.get("session") == "gone":
        ws = web.WebSocketResponse(protocols=(p.SUBPROTOCOL,))
        await ws.prepare(request)
        await ws.close(code=p.CloseCode.UNKNOWN_SESSION)
        return ws
    if request.headers.get("Authorization") != "Bearer secret":
        raise web.HTTPUnauthorized
    ws = web.WebSocketResponse(protocols=(p.SUBPROTOCOL,), compress=False)
    await ws.prepare(request)
    session = request.match_info.get("session", "new")
    pipeline, drain = "identity", DrainStrategy.LATEST
    if session == "new":
        hello = p.decode_client(await ws.receive_bytes())
        assert isinstance(hello, p.Hello)
        pipeline = hello.pipeline or pipeline
        drain = hello.drain or drain
    await ws.send_bytes(
        p.encode_welcome(
            session=session,
            resume="r-" + session,
            pipeline=pipeline,
            drain=drain,
            params={},
            limits=Limits(max_frame=1024),
        )
    )
    if session == "chatty":
        await ws.send_str("text is not protocol v1")
    async for message in ws:
        try:
            msg = p.decode_client(message.data)
        except p.ProtocolViolation as exc:
            await ws.send_bytes(exc.encode())
            continue
        if isinstance(msg, p.InputFrame) and msg.seq == FAIL_SEQ:
            await ws.send_bytes(p.encode_error(ErrorCode.PIPELINE_ERROR, "boom", seq=msg.seq))
        elif isinstance(msg, p.InputFrame):
            await ws.send_bytes(
                p.encode_result(msg.seq, msg.ct, msg.payload, timings=FrameTimings(1, 2, 3))
            )
        elif isinstance(msg, p.Call):
            await ws.send_bytes(p.encode_reply(msg.id, {"method": msg.method, **msg.args}))
        elif isinstance(msg, p.ParamsUpdate):
            await ws.send_bytes(p.encode_event(EventName.STATS, msg.params))
    return ws


@pytest.fixture
async def base_url(aiohttp_server: ServerFactory) -> str:
    app = web.Application()
    app.router.add_get("/api/v1/ws", fake_session)
    app.router.add_get("/api/v1/sessions/{session}/ws", fake_session)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


async def test_connect_to_a_session_without_hello(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="s1") as client:
        assert client.welcome.session == "s1"
        assert client.welcome.resume == "r-s1"
        assert client.welcome.limits.max_frame == 1024


async def test_connect_with_hello_creates_the_session(base_url: str) -> None:
    client = await Client.connect(
        base_url, token="secret", pipeline="sketch", drain=DrainStrategy.ALL
    )
    try:
        assert (client.welcome.session, client.welcome.pipeline) == ("new", "sketch")
        assert client.welcome.drain == "all"
    finally:
        await client.close()
    assert client.closed


async def test_frames_are_answered_by_results_and_errors(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="s1") as client:
        await client.send_frame(1, ContentType.JPEG, b"jpeg")
        await client.send_frame(FAIL_SEQ, ContentType.JPEG, b"jpeg")
        answers: list[Result | ServerError] = []
        async for answer in client.results():
            answers.append(answer)
            if len(answers) == 2:
                break
    result, error = answers
    assert isinstance(result, Result)
    assert (result.seq, result.ct, bytes(result.payload)) == (1, "image/jpeg", b"jpeg")
    assert result.timings == FrameTimings(1.0, 2.0, 3.0)
    assert isinstance(error, ServerError)
    assert (error.code, error.seq, error.fatal) == ("pipeline_error", FAIL_SEQ, False)


async def test_frame_over_the_announced_max_frame_is_refused_locally(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="s1") as client:
        with pytest.raises(ValueError, match="max_frame"):
            await client.send_frame(1, ContentType.JPEG, b"x" * 1024)


async def test_call_returns_result_and_raises_reply_errors(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="s1") as client:
        results = await asyncio.gather(
            client.call("session.stats"), client.call("pipeline.info", {"verbose": True})
        )
        assert list(results) == [
            {"method": "session.stats"},
            {"method": "pipeline.info", "verbose": True},
        ]
        with pytest.raises(ServerError) as info:
            await client.call("session.explode")
        assert info.value.code == "not_found"


async def test_params_and_events(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="s1") as client:
        await client.set_params({"strength": 0.5})
        event = await client.next_event()
        assert (event.name, event.data) == ("stats", {"strength": 0.5})


async def test_receive_after_close_raises_connection_closed(base_url: str) -> None:
    client = await Client.connect(base_url, token="secret", session="s1")
    await client.close()
    with pytest.raises(ConnectionClosed):
        await client.receive()
    with pytest.raises(ConnectionClosed):
        await client.next_event()
    assert [e async for e in client.events()] == []


async def test_refused_upgrade_is_a_handshake_error(base_url: str) -> None:
    with pytest.raises(HandshakeError) as info:
        await Client.connect(base_url, token="wrong", session="s1")
    assert info.value.status == 401


async def test_close_before_welcome_carries_the_close_code(base_url: str) -> None:
    with pytest.raises(ConnectionClosed) as info:
        await Client.connect(base_url, token="secret", session="gone")
    assert info.value.code == p.CloseCode.UNKNOWN_SESSION


async def test_text_from_the_server_ends_the_connection(base_url: str) -> None:
    async with await Client.connect(base_url, token="secret", session="chatty") as client:
        with pytest.raises(ConnectionClosed) as info:
            await client.receive()
        assert isinstance(info.value.__cause__, p.ProtocolViolation)
        assert [a async for a in client.results()] == []
        with pytest.raises(ConnectionClosed):
            await client.call("session.stats")


def test_results_view_tolerates_missing_timings() -> None:
    frame = p.decode(p.encode(p.FrameType.RESULT, {"seq": 2, "ct": "image/png"}, b"x"))
    result = Result.from_frame(frame)
    assert (result.seq, result.timings, result.superseded) == (2, None, 0)
