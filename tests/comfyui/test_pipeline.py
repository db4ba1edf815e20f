"""The ``comfyui`` pipeline kind: a realtime session's frames through a workflow on a
(fake) ComfyUI server."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import Easel, invert_graph, png
from transport.client import Client, Result, ServerError
from transport.protocol import ContentType


async def answers(client: Client, count: int) -> list[Result | ServerError]:
    found: list[Result | ServerError] = []
    async with asyncio.timeout(30):
        async for answer in client.results():
            found.append(answer)
            if len(found) == count:
                break
    return found


async def test_a_session_on_the_comfyui_pipeline_gets_results(
    easel: Easel, fake: FakeComfy
) -> None:
    options = {"url": fake.url, "workflow": invert_graph("placeholder.png"), "image_node": "1"}
    await easel.ok(
        "POST",
        "/api/v1/pipelines",
        {"name": "comfy", "kind": "comfyui", "options": {**options, "output_node": "3"}},
        status=201,
    )
    created = await easel.ok(
        "POST",
        "/api/v1/sessions",
        {"pipeline": "comfy", "drain": "all", "params": {"inputs": {"3.filename_prefix": "rt"}}},
        status=201,
    )
    client = await Client.connect(
        easel.url, token=created["token"], session=created["id"], http=easel.http
    )
    try:
        await client.send_frame(1, ContentType.PNG, png((10, 20, 30), (4, 4)))
        await client.send_frame(2, ContentType.PNG, b"not a png")
        await client.send_frame(3, ContentType.PNG, png((200, 100, 0), (4, 4)))
        first, bad, third = await answers(client, 3)
    finally:
        await client.close()
    assert isinstance(first, Result)
    assert isinstance(third, Result)
    assert isinstance(bad, ServerError)
    assert bad.code == "bad_content"
    pixels = [
        Image.open(io.BytesIO(bytes(r.payload))).convert("RGB").getpixel((0, 0))
        for r in (first, third)
    ]
    expected = [(245, 235, 225), (55, 155, 255)]
    for got, want in zip(pixels, expected, strict=True):
        assert isinstance(got, tuple)
        assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)
    assert (fake.dirs.output / "rt_00001_.png").exists()  # the params filled the template


async def test_a_workflow_the_server_refuses_fails_only_that_frame(
    easel: Easel, fake: FakeComfy
) -> None:
    graph = invert_graph("placeholder.png")
    options = {"url": fake.url, "workflow": graph, "image_node": "1"}
    await easel.ok(
        "POST", "/api/v1/pipelines", {"name": "c", "kind": "comfyui", "options": options}, 201
    )
    created = await easel.ok("POST", "/api/v1/sessions", {"pipeline": "c", "drain": "all"}, 201)
    client = await Client.connect(
        easel.url, token=created["token"], session=created["id"], http=easel.http
    )
    try:
        await client.send_frame(1, ContentType.PNG, png(), params={"inputs": {"2.image": ["1", 9]}})
        await client.send_frame(2, ContentType.PNG, png())
        rejected, fine = await answers(client, 2)
    finally:
        await client.close()
    assert isinstance(rejected, ServerError)
    # the protocol's nearest code for an invalid request; the server's message kept
    assert (rejected.code, rejected.message) == ("bad_params", "Prompt outputs failed validation")
    assert isinstance(fine, Result)
