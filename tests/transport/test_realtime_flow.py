"""Drains, pipeline crashes, reloads, violations and session limits over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support import Easel, ServerFactory, collect, png, refused
from transport.client import Client, ConnectionClosed, Result, ServerError
from transport.protocol import (
    CloseCode,
    ContentType,
    FrameType,
    decode,
    encode,
    encode_frame,
)
from transport.ws import CLOSE_TIMEOUT


async def simulated(
    easel: Easel, name: str = "sim", max_batch: int | None = None, **options: object
) -> None:
    body = {"name": name, "kind": "simulated", "max_batch": max_batch, "options": options}
    status, answer = await easel.post("/api/v1/pipelines", body)
    assert status == 201, answer


async def test_latest_drain_supersedes_and_answers_the_newest(easel: Easel) -> None:
    await simulated(easel, cost_ms=40)
    client = await easel.connect(pipeline="sim", drain="latest")
    image = png()
    for seq in range(20):
        await client.send_frame(seq, ContentType.PNG, image)
    answers: list[Result] = []
    async with asyncio.timeout(20):
        async for answer in client.results():
            assert isinstance(answer, Result)
            answers.append(answer)
            if answer.seq == 19:
                break
    seqs = [a.seq for a in answers]
    assert seqs == sorted(seqs)
    assert len(answers) < 20
    assert len(answers) + sum(a.superseded for a in answers) == 20  # every frame accounted
    stats = await client.call("session.stats")
    assert stats["superseded"] == 20 - len(answers)
    await client.close()


async def test_all_drain_answers_every_frame_in_order(easel: Easel) -> None:
    await simulated(easel, cost_ms=2)
    client = await easel.connect(pipeline="sim", drain="all")
    for seq in range(60):
        await client.send_frame(seq, ContentType.PNG, png())
    answers = await collect(client, 60)
    assert [a.seq for a in answers if isinstance(a, Result)] == list(range(60))
    assert all(isinstance(a, Result) and a.superseded == 0 for a in answers)
    await client.close()


async def test_a_flooding_client_never_grows_the_all_drain_past_its_bound(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(drain_capacity=4)
    await simulated(easel, cost_ms=5)
    created = await easel.session(pipeline="sim", drain="all")
    client = await Client.connect(easel.url, token=created["token"], session=created["id"])
    frame = png()
    sender = asyncio.ensure_future(
        asyncio.gather(*(client.send_frame(seq, ContentType.PNG, frame) for seq in range(200)))
    )
    answers = await collect(client, 200)
    await sender
    assert [a.seq for a in answers if isinstance(a, Result)] == list(range(200))
    stats = await client.call("session.stats")
    assert stats["frames_in"] == 200
    assert 1 <= stats["queued_peak"] <= 4  # the reader waited instead of queueing more
    await client.close()


async def test_pipeline_crash_answers_pipeline_error_and_recovers(easel: Easel) -> None:
    # one frame per batch: a crash fails the whole batch it is in
    await simulated(easel, max_batch=1, cost_ms=1)
    client = await easel.connect(pipeline="sim", drain="all")
    await client.send_frame(1, ContentType.PNG, png())
    await client.send_frame(2, ContentType.PNG, png(), params={"crash": True})
    await client.send_frame(3, ContentType.PNG, png())
    answers = await collect(client, 3)
    assert isinstance(answers[0], Result)
    assert isinstance(answers[1], ServerError)
    assert (answers[1].code, answers[1].seq, answers[1].fatal) == ("pipeline_error", 2, False)
    assert isinstance(answers[2], Result)
    assert answers[2].seq == 3  # queued during the restart, answered by the new replica
    async with asyncio.timeout(10):
        events = [await client.next_event(), await client.next_event()]
    assert [e.name for e in events] == ["pipeline.restarting", "pipeline.ready"]
    assert events[0].data == {"pipeline": "sim"}
    await client.close()


async def test_reload_while_streaming_answers_every_frame(easel: Easel) -> None:
    await simulated(easel, cost_ms=3)
    client = await easel.connect(pipeline="sim", drain="all")

    async def stream() -> None:
        for seq in range(150):
            await client.send_frame(seq, ContentType.PNG, png())
            await asyncio.sleep(0.001)

    streaming = asyncio.ensure_future(stream())
    await asyncio.sleep(0.05)
    status, reloaded = await easel.post("/api/v1/pipelines/sim/reload", {"replicas": 2})
    assert status == 200, reloaded
    assert (reloaded["generation"], reloaded["replicas"]) == (2, 2)
    answers = await collect(client, 150)
    await streaming
    assert [a.seq for a in answers if isinstance(a, Result)] == list(range(150))
    await client.close()


async def test_protocol_violations_get_errors_then_1008(easel: Easel) -> None:
    created = await easel.session()
    headers = {"Authorization": f"Bearer {created['token']}"}
    url = easel.url + f"/api/v1/sessions/{created['id']}/ws"
    async with easel.http.ws_connect(url, protocols=("easel.v1",), headers=headers) as ws:
        assert decode(await ws.receive_bytes()).type is FrameType.WELCOME
        cases: list[tuple[bytes | str, str]] = [
            (b"\x00", "bad_frame"),
            (b"\xea\x02\x10\x00\x00\x00\x00\x00", "unsupported_version"),
            (encode(0x55, {}), "unknown_type"),  # type: ignore[arg-type]
            ("hello", "binary_only"),
            (encode_frame(1, ContentType.PNG, b""), "bad_content"),
            (encode_frame(5, ContentType.RGB8, b"123", w=2, h=2), "bad_content"),
        ]
        for data, code in cases:
            if isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_bytes(data)
            error = decode(await ws.receive_bytes())
            assert (error.type, error.header["code"], error.header["fatal"]) == (
                FrameType.ERROR,
                code,
                False,
            )
        # a valid frame resets the count; then 16 violations in a row close with 1008
        await ws.send_bytes(encode_frame(7, ContentType.PNG, png()))
        assert decode(await ws.receive_bytes()).type is FrameType.RESULT
        await ws.send_bytes(encode_frame(7, ContentType.PNG, png()))  # seq must increase
        assert decode(await ws.receive_bytes()).header["code"] == "bad_frame"
        for _ in range(15):
            await ws.send_bytes(b"junk")
        codes = []
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                codes.append(decode(message.data).header["code"])
        assert codes == ["bad_frame"] * 15
        assert ws.close_code == CloseCode.POLICY


async def test_an_oversized_message_closes_with_1009(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_frame=64 * 1024)
    created = await easel.session()
    headers = {"Authorization": f"Bearer {created['token']}"}
    url = easel.url + f"/api/v1/sessions/{created['id']}/ws"
    async with easel.http.ws_connect(url, protocols=("easel.v1",), headers=headers) as ws:
        welcome = decode(await ws.receive_bytes())
        assert welcome.header["limits"]["max_frame"] == 64 * 1024
        await ws.send_bytes(encode_frame(1, ContentType.PNG, b"x" * (65 * 1024)))
        async for _ in ws:
            pass
        assert ws.close_code == CloseCode.TOO_LARGE


async def test_session_limit_is_a_503_with_retry_after(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_sessions=2)
    await easel.session()
    await easel.session()
    async with easel.http.post(easel.url + "/api/v1/sessions", json={}) as response:
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["code"] == "overloaded"


async def test_idle_session_expires_and_its_token_stops_working(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(session_idle_timeout=0.3)
    created = await easel.session()
    client = await Client.connect(easel.url, token=created["token"], session=created["id"])
    await asyncio.sleep(0.5)  # attached sessions never expire
    assert (await easel.request("GET", f"/api/v1/sessions/{created['id']}"))[0] == 200
    await client.close()
    for _ in range(100):
        if (await easel.request("GET", f"/api/v1/sessions/{created['id']}"))[0] == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the idle session never expired")
    _, code = await refused(easel, f"/api/v1/sessions/{created['id']}/ws", created["token"])
    assert code == CloseCode.UNKNOWN_SESSION


async def test_deleting_a_session_closes_its_socket_with_an_event(easel: Easel) -> None:
    created = await easel.session()
    client = await Client.connect(easel.url, token=created["token"], session=created["id"])
    status, _ = await easel.request("DELETE", f"/api/v1/sessions/{created['id']}")
    assert status == 204
    async with asyncio.timeout(5):
        event = await client.next_event()
    assert (event.name, event.data) == ("session.closed", {"reason": "session deleted"})
    await client.close()
    assert (await easel.request("GET", f"/api/v1/sessions/{created['id']}"))[0] == 404


@pytest.mark.parametrize("drain", ["latest", "all"])
async def test_many_clients_at_once(easel: Easel, drain: str) -> None:
    clients = [await easel.connect(pipeline="imagefx", drain=drain) for _ in range(8)]
    for client in clients:
        for seq in range(5):
            await client.send_frame(seq, ContentType.PNG, png())
    for client in clients:
        answers = await collect(client, 1)
        assert isinstance(answers[0], Result)
        await client.close()


async def test_a_crashed_session_closes_1011_and_no_other_session_notices(
    easel: Easel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.sessions.actor import SessionActor

    calls = SessionActor._call

    def buggy(self: SessionActor, call: Any) -> Any:
        if call.args.get("bug"):
            raise RuntimeError("a bug in a handler")
        return calls(self, call)

    monkeypatch.setattr(SessionActor, "_call", buggy)
    victim_info = await easel.session(pipeline="imagefx", params={"effect": "invert"})
    victim = await Client.connect(easel.url, token=victim_info["token"], session=victim_info["id"])
    bystander = await easel.connect(pipeline="passthrough", drain="all")
    with pytest.raises(ConnectionClosed) as closed:
        await victim.call("session.stats", {"bug": True})
    assert closed.value.code == CloseCode.INTERNAL
    await victim.close()
    await bystander.send_frame(1, ContentType.PNG, png())
    (answer,) = await collect(bystander, 1)
    assert isinstance(answer, Result)
    # the session was restarted with what the user handed us, and can be resumed
    again = await Client.connect(easel.url, token=victim_info["token"], session=victim_info["id"])
    assert again.welcome.params == {"effect": "invert"}
    await again.close()
    await bystander.close()


async def test_many_latest_sessions_wait_in_their_drains_not_in_the_pipeline(
    easel: Easel,
) -> None:
    from transport.keys import DOMAIN

    await simulated(easel, max_batch=1, cost_ms=10)
    handle = easel.server.app[DOMAIN].pipelines.get("sim")
    assert handle.room.capacity == 2  # one replica, two frames of room
    clients = [await easel.connect(pipeline="sim", drain="latest") for _ in range(12)]
    deepest = 0

    async def watch() -> None:
        nonlocal deepest
        while True:
            deepest = max(deepest, handle.replicas[0].pending, handle.room.used)
            await asyncio.sleep(0.002)

    watcher = asyncio.ensure_future(watch())
    for seq in range(20):
        for client in clients:
            await client.send_frame(seq, ContentType.PNG, png())
    for client in clients:
        answered: list[Result] = []
        async with asyncio.timeout(20):
            async for answer in client.results():
                assert isinstance(answer, Result)
                answered.append(answer)
                if answer.seq == 19:
                    break
        assert len(answered) + sum(a.superseded for a in answered) == 20
        await client.close()
    watcher.cancel()
    assert 1 <= deepest <= 2  # the pipeline never held more than its room


async def test_clients_that_stop_reading_do_not_hold_the_pipeline_from_others(
    easel: Easel,
) -> None:
    """An `all` session whose client stops reading blocks in its own send; the places
    its frames held in the pipeline's room go to other sessions meanwhile."""
    from transport.keys import DOMAIN

    await simulated(easel, max_batch=1, cost_ms=2)
    room = easel.server.app[DOMAIN].pipelines.get("sim").room
    assert room.capacity == 2
    big = bytes(1_000_000)
    stuck = [await easel.connect(pipeline="sim", drain="all") for _ in range(2)]

    async def flood(client: Client) -> None:
        for seq in range(200):
            await client.send_frame(seq, ContentType.PNG, big)

    for client in stuck:
        client._reader.cancel()  # the client reads nothing any more
    floods = [asyncio.ensure_future(flood(client)) for client in stuck]
    await asyncio.sleep(2)  # their answers fill the socket buffers; their sends block
    other = await easel.connect(pipeline="sim", drain="latest")
    await other.send_frame(0, ContentType.PNG, png())
    async with asyncio.timeout(8):
        answer = await anext(aiter(other.results()))
    assert isinstance(answer, Result)
    assert answer.seq == 0
    for task in floods:
        task.cancel()
    await asyncio.gather(*floods, return_exceptions=True)
    await other.close()
    # Ending a session whose client reads nothing: the goodbye cannot be written, so
    # after CLOSE_TIMEOUT the server aborts the socket rather than wait for ever.
    for client in stuck:
        status, _ = await easel.request("DELETE", f"/api/v1/sessions/{client.welcome.session}")
        assert status == 204
    for _ in range(int((CLOSE_TIMEOUT + 5) / 0.05)):
        if await _open_websockets(easel) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _open_websockets(easel) == 0
    for client in stuck:  # our side still holds unsent frames: drop them
        connection = client._ws._response.connection
        if connection is not None and connection.transport is not None:
            connection.transport.abort()


async def _open_websockets(easel: Easel) -> float:
    async with easel.http.get(easel.url + "/metrics") as response:
        text = await response.text()
    (line,) = [row for row in text.splitlines() if row.startswith("easel_ws_connections ")]
    return float(line.split()[1])
