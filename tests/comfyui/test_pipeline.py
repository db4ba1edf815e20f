"""The ``comfyui`` pipeline kind: a realtime session's frames through a workflow on the
servers of the fleet (fakes), over a real WebSocket."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from actors.comfyui.frames import FrameWork
from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.comfyui.conftest import (
    Easel,
    eventually,
    invert_graph,
    png,
    ready,
    session,
    txt2img_graph,
)
from transport.client import Client, Result, ServerError
from transport.protocol import ContentType

TEMPLATE = invert_graph("placeholder.png")
"""LoadImage(1) → ImageInvert(2) → SaveImage(3)."""


async def answers(client: Client, count: int) -> list[Result | ServerError]:
    found: list[Result | ServerError] = []
    async with asyncio.timeout(30):
        async for answer in client.results():
            found.append(answer)
            if len(found) == count:
                break
    return found


async def pipeline(easel: Easel, name: str = "comfy", replicas: int = 1, **options: Any) -> None:
    body = {"workflow": TEMPLATE, "image_node": "1", **options}
    config = {"name": name, "kind": "comfyui", "replicas": replicas, "options": body}
    await easel.ok("POST", "/api/v1/pipelines", config, 201)


def first_pixel(result: Result | ServerError) -> tuple[int, ...]:
    assert isinstance(result, Result), result
    pixel = Image.open(io.BytesIO(bytes(result.payload))).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def saved(fake: FakeComfy) -> list[str]:
    """The images the fake wrote, by path under its output directory."""
    return sorted(str(p.relative_to(fake.dirs.output)) for p in fake.dirs.output.rglob("*.png"))


def needing(checkpoint: str) -> dict[str, Any]:
    """The template, plus a text-to-image branch (its own output) that loads ``checkpoint``."""
    branch = txt2img_graph(checkpoint)
    branch["30"] = branch.pop("3")  # the template's SaveImage is node 3
    branch["8"]["inputs"]["samples"] = ["30", 0]
    return {**TEMPLATE, **branch}


async def test_a_session_on_the_comfyui_pipeline_gets_results_from_a_registered_server(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu-1")
    await ready(easel, "gpu-1")
    await pipeline(easel, output_node="3")
    async with session(easel, params={"inputs": {"3.filename_prefix": "rt"}}) as client:
        await client.send_frame(1, ContentType.PNG, png((10, 20, 30), (4, 4)))
        await client.send_frame(2, ContentType.PNG, b"not a png")
        await client.send_frame(3, ContentType.PNG, png((200, 100, 0), (4, 4)))
        first, bad, third = await answers(client, 3)
    assert isinstance(bad, ServerError)
    assert bad.code == "bad_content"
    for got, want in zip(
        (first_pixel(first), first_pixel(third)), [(245, 235, 225), (55, 155, 255)], strict=True
    ):
        assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)
    assert saved(fake) == ["rt_00001_.png", "rt_00002_.png"]  # the params filled the template


async def test_a_workflow_the_server_refuses_fails_only_that_frame(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu-1")
    await ready(easel, "gpu-1")
    await pipeline(easel)
    async with session(easel) as client:
        await client.send_frame(1, ContentType.PNG, png(), params={"inputs": {"2.image": ["1", 9]}})
        await client.send_frame(2, ContentType.PNG, png(), params={"inputs": {"7.image": 1}})
        await client.send_frame(3, ContentType.PNG, png())
        rejected, unknown, fine = await answers(client, 3)
    assert isinstance(rejected, ServerError)
    # the protocol's nearest code for an invalid request; the server's message kept
    assert (rejected.code, rejected.message) == ("bad_params", "Prompt outputs failed validation")
    assert isinstance(unknown, ServerError)
    assert (unknown.code, unknown.message) == (
        "bad_params",
        "inputs: '7.image' names no node of the workflow",
    )
    assert isinstance(fine, Result)


async def test_without_a_ready_server_that_can_run_the_template_a_frame_is_overloaded(
    easel: Easel, fake: FakeComfy
) -> None:
    await pipeline(easel, workflow=needing("other.safetensors"), output_node="3")
    async with session(easel) as client:
        await client.send_frame(1, ContentType.PNG, png())
        (nothing,) = await answers(client, 1)
        await easel.register(fake, "gpu-1")
        await ready(easel, "gpu-1")
        await client.send_frame(2, ContentType.PNG, png())
        (lacking,) = await answers(client, 1)
    assert isinstance(nothing, ServerError)
    assert (nothing.code, nothing.seq) == ("overloaded", 1)
    assert nothing.message == "no ready ComfyUI server can run this workflow (none is registered)"
    assert isinstance(lacking, ServerError)
    assert (lacking.code, lacking.seq) == ("overloaded", 2)
    assert lacking.message == (
        "no ready ComfyUI server can run this workflow (gpu-1 lacks model:other.safetensors)"
    )
    assert saved(fake) == []


async def test_a_frame_goes_to_the_server_that_has_the_templates_checkpoint(
    easel: Easel, fake: FakeComfy, tmp_path: Path
) -> None:
    other = FakeConfig(base_dir=tmp_path / "other", models={"checkpoints": ["other.safetensors"]})
    async with running_fake(other) as holder:
        await easel.register(fake, "plain", max_in_flight=4)
        await easel.register(holder, "holder")
        await ready(easel, "plain", "holder")
        await pipeline(easel, workflow=needing("other.safetensors"), output_node="3")
        async with session(easel) as client:
            for seq in (1, 2, 3):
                await client.send_frame(seq, ContentType.PNG, png())
            got = await answers(client, 3)
        assert all(isinstance(answer, Result) for answer in got), got
        assert saved(fake) == []
        assert len([path for path in saved(holder) if path.startswith("easel/")]) == 3


async def test_a_pinned_pipeline_uses_only_its_server_named_by_id_or_by_url(
    easel: Easel, three_fakes: list[FakeComfy]
) -> None:
    a, b, _ = three_fakes
    await easel.register(a, "a", max_in_flight=4)
    b_id = (await easel.register(b, "b"))["id"]
    await ready(easel, "a", "b")
    await pipeline(easel, "by-name", server="b")
    await pipeline(easel, "by-id", server=b_id)
    await pipeline(easel, "by-url", url=b.url + "/")  # as pipelines stored before the fleet
    await pipeline(easel, "unknown", server="c")
    got = []
    for name in ("by-name", "by-id", "by-url", "unknown"):
        async with session(easel, name) as client:
            await client.send_frame(1, ContentType.PNG, png())
            got += await answers(client, 1)
    named, by_id, by_url, unknown = got
    assert isinstance(named, Result), named
    assert isinstance(by_id, Result), by_id
    assert isinstance(by_url, Result), by_url
    assert (len(saved(a)), len(saved(b))) == (0, 3)
    assert isinstance(unknown, ServerError)
    assert (unknown.code, unknown.message) == (
        "overloaded",
        "no ready ComfyUI server can run this workflow (no server 'c' is registered)",
    )


async def test_when_the_server_running_a_frame_dies_the_frame_is_answered_by_another(
    easel: Easel, three_fakes: list[FakeComfy]
) -> None:
    fakes = three_fakes[:2]
    for index, fake in enumerate(fakes):
        fake.slow(0.1, steps=3)  # each node takes 0.3 s: long enough to die mid-frame
        await easel.register(fake, f"gpu-{index}")
    await ready(easel, "gpu-0", "gpu-1")
    await pipeline(easel)
    async with session(easel) as client:
        await client.send_frame(1, ContentType.PNG, png((10, 20, 30)))

        async def serving() -> FakeComfy | None:
            return next((f for f in fakes if f.describe()["nodes_started"]), None)

        victim: FakeComfy = await eventually(serving, "a server runs the frame")
        victim.die()
        (first,) = await answers(client, 1)
        await client.send_frame(2, ContentType.PNG, png((10, 20, 30)))
        (second,) = await answers(client, 1)
    survivor = next(f for f in fakes if f is not victim)
    assert first_pixel(first) == first_pixel(second) == (245, 235, 225)
    assert len(saved(survivor)) == 2


async def test_frames_at_once_spread_over_servers_within_their_max_in_flight(
    easel: Easel, three_fakes: list[FakeComfy]
) -> None:
    for index, fake in enumerate(three_fakes[:2]):
        fake.slow(0.05, steps=2)
        await easel.register(fake, f"gpu-{index}", max_in_flight=1)
    await ready(easel, "gpu-0", "gpu-1")
    await pipeline(easel, replicas=3)
    deepest = 0

    async def watch() -> None:
        nonlocal deepest
        while True:
            deepest = max([deepest, *(f.describe()["queue_remaining"] for f in three_fakes)])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    async with session(easel) as client:
        for seq in (1, 2, 3):
            await client.send_frame(seq, ContentType.PNG, png())
        got = await answers(client, 3)
    watcher.cancel()
    assert all(isinstance(answer, Result) for answer in got), got
    assert sorted(len(saved(fake)) for fake in three_fakes[:2]) == [1, 2]
    assert deepest == 1  # the third frame waited for a place instead of queueing behind one


async def test_a_comfyui_pipeline_cannot_be_hosted_in_a_process(easel: Easel) -> None:
    options = {"workflow": TEMPLATE, "image_node": "1"}
    body = {"name": "c", "kind": "comfyui", "hosting": "process", "options": options}
    status, problem = await easel.call("POST", "/api/v1/pipelines", body)
    assert status == 422
    assert "uses the engine's services" in problem["detail"]


async def test_a_server_that_fails_a_frame_costs_it_one_retry_and_two_failures_fail_it(
    easel: Easel, three_fakes: list[FakeComfy]
) -> None:
    a, b, _ = three_fakes
    a.reject(500, paths=("/upload",))
    await easel.register(a, "a")  # equally loaded: the first registered is chosen first
    await easel.register(b, "b")
    await ready(easel, "a", "b")
    await pipeline(easel)
    async with session(easel) as client:
        await client.send_frame(1, ContentType.PNG, png())
        (retried,) = await answers(client, 1)
        b.reject(500, paths=("/upload",))
        await client.send_frame(2, ContentType.PNG, png())
        (failed,) = await answers(client, 1)
    assert isinstance(retried, Result), retried
    assert (len(saved(a)), len(saved(b))) == (0, 1)
    assert isinstance(failed, ServerError)
    assert (failed.code, failed.seq) == ("pipeline_error", 2)
    assert failed.message == (
        "ComfyUI servers a, b failed the frame: POST /upload/image answered 500"
    )


async def test_the_router_refuses_to_block_an_event_loop(easel: Easel) -> None:
    router = easel.domain.pipelines.context.comfyui
    assert router is not None
    with pytest.raises(RuntimeError, match="called on an event loop"):
        router.run_blocking([FrameWork(prompt=TEMPLATE, image_node="1", image=png())])


async def test_frames_that_time_out_leave_nothing_queued_on_the_server(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu", max_in_flight=2)
    await ready(easel, "gpu")
    await pipeline(easel, timeout=1.0)
    fake.hang()  # the first prompt never ends (and ignores interrupts); the second waits
    async with session(easel) as client:
        await client.send_frame(1, ContentType.PNG, png())
        await client.send_frame(2, ContentType.PNG, png())
        got = await answers(client, 2)
    assert [(a.code if isinstance(a, ServerError) else a) for a in got] == ["pipeline_error"] * 2

    async def only_the_hung_one_left() -> bool:
        return bool(fake.describe()["queue_remaining"] == 1)

    await eventually(only_the_hung_one_left, "the waiting prompt taken off the queue")
    fake.hang(False)
