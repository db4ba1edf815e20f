"""The realtime path end to end: REST-created sessions, a real WebSocket, real pipelines."""

from __future__ import annotations

import io

import aiohttp
import pytest
from PIL import Image

from tests.support import Easel, collect, png, refused
from transport.client import Client, Result, ServerError
from transport.protocol import CloseCode, ContentType, FrameType, decode, encode_hello


async def test_passthrough_answers_each_frame_with_its_bytes(easel: Easel) -> None:
    client = await easel.connect(pipeline="passthrough", drain="all")
    assert client.welcome.pipeline == "passthrough"
    assert client.welcome.drain == "all"
    image = png()
    for seq in range(5):
        await client.send_frame(seq, ContentType.PNG, image)
    answers = await collect(client, 5)
    assert [a.seq for a in answers if isinstance(a, Result)] == [0, 1, 2, 3, 4]
    for answer in answers:
        assert isinstance(answer, Result)
        assert bytes(answer.payload) == image
        assert answer.ct == "image/png"
        assert answer.timings is not None
        assert answer.timings.total_ms >= answer.timings.pipeline_ms >= 0
    await client.close()


async def test_imagefx_applies_session_params_and_frame_overrides(easel: Easel) -> None:
    client = await easel.connect(pipeline="imagefx", drain="all", params={"effect": "invert"})
    await client.send_frame(1, ContentType.PNG, png((10, 20, 30)))
    await client.send_frame(2, ContentType.PNG, png((10, 20, 30)), params={"effect": "none"})
    first, second = await collect(client, 2)
    assert isinstance(first, Result)
    assert isinstance(second, Result)
    assert Image.open(io.BytesIO(bytes(first.payload))).getpixel((0, 0)) == (245, 235, 225)
    assert Image.open(io.BytesIO(bytes(second.payload))).getpixel((0, 0)) == (10, 20, 30)
    await client.close()


async def test_an_undecodable_image_fails_only_that_frame(easel: Easel) -> None:
    client = await easel.connect(pipeline="imagefx", drain="all")
    await client.send_frame(1, ContentType.JPEG, b"not a jpeg at all")
    await client.send_frame(2, ContentType.PNG, png())
    bad, good = await collect(client, 2)
    assert isinstance(bad, ServerError)
    assert (bad.code, bad.seq, bad.fatal) == ("bad_content", 1, False)
    assert isinstance(good, Result)
    assert good.seq == 2
    await client.close()


async def test_bad_frame_params_are_answered_bad_params(easel: Easel) -> None:
    client = await easel.connect(pipeline="imagefx", drain="all")
    await client.send_frame(1, ContentType.PNG, png(), params={"effect": "melt"})
    (answer,) = await collect(client, 1)
    assert isinstance(answer, ServerError)
    assert (answer.code, answer.seq) == ("bad_params", 1)
    await client.close()


async def test_calls_and_params(easel: Easel) -> None:
    client = await easel.connect(pipeline="imagefx", params={"effect": "invert"})
    assert await client.call("session.params") == {"effect": "invert"}
    await client.set_params({"effect": "grayscale"})
    assert await client.call("session.params") == {"effect": "grayscale"}
    info = await client.call("pipeline.info")
    assert info["name"] == "imagefx"
    assert "effect" in info["params_schema"]["properties"]
    stats = await client.call("session.stats")
    assert stats["frames_in"] == 0
    with pytest.raises(ServerError) as unknown:
        await client.call("session.explode")
    assert unknown.value.code == "not_found"
    await client.close()


async def test_resume_with_the_token_keeps_params(easel: Easel) -> None:
    created = await easel.session(pipeline="imagefx", params={"effect": "invert"})
    first = await Client.connect(easel.url, token=created["token"], session=created["id"])
    await first.set_params({"effect": "posterize"})
    assert await first.call("session.params") == {"effect": "posterize"}
    await first.close()
    again = await Client.connect(easel.url, token=created["token"], session=created["id"])
    assert again.welcome.session == created["id"]
    assert again.welcome.params == {"effect": "posterize"}
    await again.close()
    # the HELLO route: /api/v1/ws with the session id and its resume token
    async with easel.http.ws_connect(easel.url + "/api/v1/ws", protocols=("easel.v1",)) as ws:
        await ws.send_bytes(encode_hello(session=created["id"], resume=created["token"]))
        welcome = decode(await ws.receive_bytes())
        assert welcome.type is FrameType.WELCOME
        assert welcome.header["session"] == created["id"]
        assert welcome.header["params"] == {"effect": "posterize"}


async def test_second_connection_is_refused_with_4409(easel: Easel) -> None:
    created = await easel.session()
    first = await Client.connect(easel.url, token=created["token"], session=created["id"])
    frames, code = await refused(easel, f"/api/v1/sessions/{created['id']}/ws", created["token"])
    assert code == CloseCode.ALREADY_ATTACHED
    assert [(f.type, f.header["code"], f.header["fatal"]) for f in frames] == [
        (FrameType.ERROR, "forbidden", True)
    ]
    assert await first.call("session.stats")  # the first connection is untouched
    await first.close()


async def test_unknown_session_and_bad_token_are_refused(easel: Easel) -> None:
    frames, code = await refused(easel, "/api/v1/sessions/nope/ws", "x")
    assert code == CloseCode.UNKNOWN_SESSION
    assert [f.header["code"] for f in frames] == ["not_found"]
    created = await easel.session()
    frames, code = await refused(easel, f"/api/v1/sessions/{created['id']}/ws", "wrong")
    assert code == CloseCode.POLICY
    assert [f.header["code"] for f in frames] == ["unauthorized"]


async def test_upgrade_without_the_subprotocol_is_a_400_problem(easel: Easel) -> None:
    created = await easel.session()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused_upgrade:
        await easel.http.ws_connect(easel.url + f"/api/v1/sessions/{created['id']}/ws")
    assert refused_upgrade.value.status == 400


async def test_params_changes_apply_to_the_next_frames(easel: Easel) -> None:
    client = await easel.connect(pipeline="imagefx", drain="all", params={"effect": "invert"})
    await client.send_frame(1, ContentType.PNG, png((10, 20, 30)))
    (first,) = await collect(client, 1)
    await client.set_params({"effect": "none"})
    assert await client.call("session.params") == {"effect": "none"}  # PARAMS was applied
    await client.send_frame(2, ContentType.PNG, png((10, 20, 30)))
    (second,) = await collect(client, 1)
    assert isinstance(first, Result)
    assert isinstance(second, Result)
    assert Image.open(io.BytesIO(bytes(first.payload))).getpixel((0, 0)) == (245, 235, 225)
    assert Image.open(io.BytesIO(bytes(second.payload))).getpixel((0, 0)) == (10, 20, 30)
    await client.close()
