"""The official comfy-sdk drives Easel's Comfy API v2 as a user would: ``COMFY_BASE_URL``
pointing at Easel, fake ComfyUI servers behind it. The SDK validates every answer
against its own models, so each call below also checks the answer's shape."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from comfy_sdk import AsyncComfy, OutputReady, StatusChange
from comfy_sdk.exceptions import IdempotencyKeyReuse, MissingAsset, NotFound, WorkflowFormatUi
from PIL import Image

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import Easel, EaselFactory, eventually, invert_graph, png, ready

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def sdk_for(easel: Easel, name: str, monkeypatch: pytest.MonkeyPatch) -> AsyncComfy:
    """An SDK client with a new client key of ``easel``."""
    made = await easel.ok("POST", "/api/v1/keys", {"name": name, "role": "client"}, 201)
    monkeypatch.setenv("COMFY_BASE_URL", easel.url)
    return AsyncComfy(api_key=made["token"])


def color_of(data: bytes) -> tuple[int, ...]:
    """The first pixel, each channel rounded to a multiple of 5 (float image math)."""
    with Image.open(io.BytesIO(data)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return tuple(5 * round(channel / 5) for channel in pixel)


async def test_upload_run_by_name_and_download(
    with_fake: Easel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await sdk_for(with_fake, "app", monkeypatch) as comfy:
        asset = comfy.assets.from_bytes(png((10, 100, 200)), filename="canvas.png")
        asset_id = await asset.commit()
        graph = invert_graph(image="canvas.png")  # by the name it was uploaded under
        job = await comfy.run(comfy.workflows.from_json(graph))
        assert job.status == "succeeded"
        assert len(job.outputs) == 1
        data = await job.outputs[0].to_bytes()
        assert color_of(data) == (245, 155, 55)
        again = comfy.assets.from_bytes(png((10, 100, 200)), filename="canvas.png")
        assert await again.commit() == asset_id  # the same reference, not a new one


async def test_an_asset_handle_in_the_graph_is_uploaded_to_the_server(
    with_fake: Easel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await sdk_for(with_fake, "app", monkeypatch) as comfy:
        asset = comfy.assets.from_bytes(png((0, 0, 0)), filename="black.png")
        workflow = comfy.workflows.from_json(invert_graph(image="placeholder.png"))
        workflow.set_input("1", "image", asset)
        job = await comfy.run(workflow)
        assert job.status == "succeeded"
        assert color_of(await job.outputs[0].to_bytes()) == (255, 255, 255)


async def test_events_end_with_outputs_before_the_terminal_status(
    with_fake: Easel, fake: FakeComfy, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.slow(0.05, steps=4)
    async with await sdk_for(with_fake, "app", monkeypatch) as comfy:
        await comfy.assets.from_bytes(png(), filename="in.png").commit()
        job = await comfy.submit(comfy.workflows.from_json(invert_graph(image="in.png")))
        events = [event async for event in job.events()]
    kinds = [type(event).__name__ for event in events]
    assert isinstance(events[0], StatusChange), kinds
    assert isinstance(events[-1], StatusChange), kinds
    assert events[-1].status == "succeeded"
    assert any(isinstance(event, OutputReady) for event in events[:-1]), kinds


async def test_errors_carry_their_codes(with_fake: Easel, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await sdk_for(with_fake, "app", monkeypatch) as comfy:
        graph = comfy.workflows.from_json(invert_graph(image="x.png"))
        await comfy.submit(graph, idempotency_key="once")
        with pytest.raises(IdempotencyKeyReuse):
            await comfy.submit(graph, idempotency_key="once")
        ghost = {"__type": "core/ASSET", "info": {"id": "nosuchasset"}}
        with pytest.raises(MissingAsset):
            await comfy.submit(comfy.workflows.from_json(invert_graph(image=ghost)))  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await comfy.jobs.get("nosuchjob")
        ui = {"nodes": [], "links": [], "version": 0.4}
        with pytest.raises(WorkflowFormatUi):
            await comfy.submit(comfy.workflows.from_json(ui))


async def test_a_job_whose_server_dies_still_succeeds(
    easel_factory: EaselFactory, three_fakes: list[FakeComfy], monkeypatch: pytest.MonkeyPatch
) -> None:
    easel = await easel_factory()
    for index, fake in enumerate(three_fakes):
        await easel.register(fake, f"s{index}")
    await ready(easel, "s0", "s1", "s2")
    for fake in three_fakes:
        fake.slow(0.2, steps=10)
    async with await sdk_for(easel, "app", monkeypatch) as comfy:
        job = await comfy.submit(comfy.workflows.from_json(invert_graph()))

        async def running_on() -> Any:
            found = await easel.ok("GET", f"/api/v1/jobs/{job.id}")
            return found["server_id"] if found["status"] == "running" else None

        server_id = await eventually(running_on, "the job runs")
        victim = next(
            fake
            for index, fake in enumerate(three_fakes)
            if easel.domain.fleet.find(f"s{index}").id == server_id
        )
        await victim.stop()  # the process is gone, with its queue
        for fake in three_fakes:
            fake.slow(0.0)
        done = await asyncio.wait_for(job.result(), 60)
    assert done.status == "succeeded"
