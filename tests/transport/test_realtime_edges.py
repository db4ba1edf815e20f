"""Edge cases of the realtime path: restarts from above, misbehaving plug-ins, slow
HELLOs, bad first HELLOs, racing creates, old replicas failing after a reload."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from actors.plugins import FrameIn, FrameOut
from engine.supervisor import Supervisor
from tests.support import Easel, ServerFactory, collect, png
from transport.client import Client, Result, ServerError
from transport.keys import DOMAIN, ENGINE
from transport.protocol import CloseCode, ContentType, FrameType, decode, encode_hello


async def test_sessions_survive_a_restart_of_their_supervisor(easel: Easel) -> None:
    created = await easel.session(pipeline="imagefx", params={"effect": "invert"})
    client = await Client.connect(easel.url, token=created["token"], session=created["id"])
    sessions = easel.server.app[ENGINE].root.child("sessions")
    assert isinstance(sessions, Supervisor)
    await sessions.stop_incarnation()  # what a parent does when it restarts its children
    await sessions.start()
    async with asyncio.timeout(5):
        async for _ in client.results():
            pass  # the old connection is closed by the restart
    status, _ = await easel.request("GET", f"/api/v1/sessions/{created['id']}")
    assert status == 200
    again = await Client.connect(easel.url, token=created["token"], session=created["id"])
    assert again.welcome.params == {"effect": "invert"}
    await again.close()


async def test_a_plug_in_answering_an_unknown_content_type_fails_only_that_frame(
    easel: Easel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.plugins import passthrough

    original = passthrough.echo

    def gif_for_gifs(frame: FrameIn[Any]) -> FrameOut:
        if bytes(frame.payload[:3]) == b"GIF":
            return FrameOut(frame.payload, "image/gif")
        return original(frame)

    monkeypatch.setattr(passthrough, "echo", gif_for_gifs)
    client = await easel.connect(pipeline="passthrough", drain="all")
    await client.send_frame(1, ContentType.PNG, b"GIF89a pretending")
    await client.send_frame(2, ContentType.PNG, png())
    bad, good = await collect(client, 2)
    assert isinstance(bad, ServerError)
    assert (bad.code, bad.seq, bad.fatal) == ("internal", 1, False)
    assert isinstance(good, Result)
    assert good.seq == 2
    await client.close()


async def test_bad_params_in_a_first_hello_are_not_fatal(easel: Easel) -> None:
    created = await easel.session(pipeline="imagefx")
    headers = {"Authorization": f"Bearer {created['token']}"}
    url = easel.url + f"/api/v1/sessions/{created['id']}/ws"
    async with easel.http.ws_connect(url, protocols=("easel.v1",), headers=headers) as ws:
        assert decode(await ws.receive_bytes()).type is FrameType.WELCOME
        await ws.send_bytes(encode_hello(params={"effect": "melt"}))
        error = decode(await ws.receive_bytes())
        assert (error.type, error.header["code"], error.header["fatal"]) == (
            FrameType.ERROR,
            "bad_params",
            False,
        )
        assert not ws.closed


async def test_a_silent_client_on_the_hello_endpoint_is_closed(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(hello_timeout=0.2)
    async with easel.http.ws_connect(easel.url + "/api/v1/ws", protocols=("easel.v1",)) as ws:
        frames = [decode(m.data) async for m in ws if m.type is aiohttp.WSMsgType.BINARY]
        assert [f.header["code"] for f in frames] == ["bad_frame"]
        assert ws.close_code == CloseCode.POLICY


async def test_concurrent_creates_respect_the_session_limit(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_sessions=2)
    results = await asyncio.gather(
        *(easel.request("POST", "/api/v1/sessions", {}) for _ in range(6))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 201, 503, 503, 503, 503]


async def test_an_old_replica_failing_after_a_reload_does_not_mark_the_pipeline_down(
    easel: Easel,
) -> None:
    await easel.post("/api/v1/pipelines", {"name": "sim", "kind": "simulated"})
    await easel.post("/api/v1/pipelines/sim/reload", {})
    handle = easel.server.app[DOMAIN].pipelines.get("sim")
    assert [ref.path for ref in handle.replicas] == ["/pipelines/sim/g2-r0"]
    handle.notify("/pipelines/sim/g1-r0", ready=False)  # the drained generation
    await asyncio.sleep(0.01)
    assert handle.ready
    status, body = await easel.request("GET", "/api/v1/ready")
    assert (status, body["pipelines"]["sim"]["state"]) == (200, "ok")
    handle.notify("/pipelines/sim/g2-r0", ready=False)  # a current one does count
    await asyncio.sleep(0.01)
    assert not handle.ready
    status, body = await easel.request("GET", "/api/v1/ready")
    assert (status, body["status"], body["pipelines"]["sim"]["state"]) == (
        200,
        "degraded",
        "degraded",
    )
    handle.notify("/pipelines/sim/g2-r0", ready=True)
    await asyncio.sleep(0.01)
    assert handle.ready
