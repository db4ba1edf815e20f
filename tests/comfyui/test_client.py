"""The ComfyUI client against a fake server over real sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.comfyui.client import (
    ComfyClient,
    ComfyEvent,
    ComfyRefused,
    ComfyUnavailable,
    ComfyUnreached,
    EventStream,
    OutputFile,
    Preview,
    WorkflowRejected,
    history_status,
    outputs_of,
    started_at,
)
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    CHECKPOINT,
    empty_graph,
    eventually,
    invert_graph,
    png,
    txt2img_graph,
)


async def until_done(stream: EventStream, prompt_id: str) -> list[ComfyEvent | Preview]:
    """Every item up to ``executing`` with ``node: null`` for the prompt (bounded)."""
    seen: list[ComfyEvent | Preview] = []
    async with asyncio.timeout(20):
        async for item in stream:
            seen.append(item)
            if (
                isinstance(item, ComfyEvent)
                and item.type == "executing"
                and item.data.get("node") is None
                and item.prompt_id == prompt_id
            ):
                return seen
    raise AssertionError(f"the socket closed before {prompt_id} finished: {seen}")


async def finished(client: ComfyClient, prompt_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = await eventually(
        lambda: client.history(prompt_id), f"{prompt_id} in the history"
    )
    return entry


async def test_information_routes(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        stats = await client.system_stats()
        assert stats["system"]["comfyui_version"] == "0.28.1"
        assert (await client.queue()).remaining == 0
        info = await client.object_info()
        assert {"LoadImage", "SaveImage", "CheckpointLoaderSimple"} <= set(info)
        assert "checkpoints" in await client.model_folders()
        assert await client.models("checkpoints") == [CHECKPOINT]
        assert await client.models("nonexistent") == []
    finally:
        await client.close()


async def test_upload_submit_history_and_view(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        name = await client.upload_image(png(), "in.png")
        assert name == "in.png"
        renamed = await client.upload_image(png((1, 2, 3)), "in.png")
        assert renamed == "in (1).png"
        async with client.events("tester") as stream:
            prompt_id = await client.submit(invert_graph(renamed), client_id="tester")
            seen = await until_done(stream, prompt_id)
        kinds = [item.type for item in seen if isinstance(item, ComfyEvent)]
        assert kinds[0] == "status"
        assert "execution_start" in kinds
        assert "execution_success" in kinds
        entry = await finished(client, prompt_id)
        assert history_status(entry) == ("success", {})
        [(node, output)] = outputs_of(entry)
        assert (node, output) == ("3", OutputFile("invert_00001_.png", "easel", "output"))
        data, content_type = await client.view(output)
        assert content_type == "image/png"
        assert data.startswith(b"\x89PNG")
    finally:
        await client.close()


async def test_a_chosen_prompt_id_is_kept(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        chosen = "0f0e0d0c-0b0a-4908-8706-050403020100"
        before = datetime.now(UTC)
        assert await client.submit(empty_graph(), prompt_id=chosen) == chosen
        entry = await finished(client, chosen)
        assert history_status(entry)[0] == "success"
        began = started_at(entry)  # from its execution_start message
        assert began is not None
        assert before - timedelta(seconds=1) <= began <= datetime.now(UTC)
        assert started_at({"status": {"messages": [["execution_start", {}]]}}) is None
    finally:
        await client.close()


async def test_a_validation_error_carries_the_node_errors(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        graph = invert_graph()
        del graph["2"]["inputs"]["image"]
        with pytest.raises(WorkflowRejected) as caught:
            await client.submit(graph)
        error = caught.value
        assert error.status == 422
        assert error.message == "Prompt outputs failed validation"
        assert error.extra["error"]["type"] == "prompt_outputs_failed_validation"
        [problem] = error.node_errors["2"]["errors"]
        assert problem["type"] == "required_input_missing"
        with pytest.raises(WorkflowRejected) as unknown:
            await client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})
        assert unknown.value.extra["error"]["type"] == "missing_node_type"
        assert unknown.value.node_errors == {}
    finally:
        await client.close()


async def test_previews_arrive_as_binary_frames(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        async with client.events("previews") as stream:
            prompt_id = await client.submit(txt2img_graph(steps=2), client_id="previews")
            seen = await until_done(stream, prompt_id)
        previews = [item for item in seen if isinstance(item, Preview)]
        assert len(previews) == 2
        assert all(p.content_type == "image/jpeg" and p.image[:2] == b"\xff\xd8" for p in previews)
        progress = [
            i.data["value"] for i in seen if isinstance(i, ComfyEvent) and i.type == "progress"
        ]
        assert progress == [1, 2]
    finally:
        await client.close()


async def test_interrupt_and_delete_from_the_queue(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url)
    try:
        fake.hang()
        running = await client.submit(empty_graph())
        pending = await client.submit(empty_graph(color=1))
        queue = await client.queue()
        assert (queue.running, queue.pending) == ((running,), (pending,))
        await client.delete_queued([pending])
        assert pending not in await client.queue()
        fake.hang(False)
        await finished(client, running)
        fake.slow(0.05, steps=50)
        later = await client.submit(empty_graph(color=2, prefix="slow"))

        async def running_now() -> bool:
            return later in (await client.queue()).running

        await eventually(running_now, "the slow prompt runs")
        await client.interrupt(later)
        assert history_status(await finished(client, later))[0] == "interrupted"
    finally:
        await client.close()


async def test_a_dead_server_is_unavailable(fake: FakeComfy) -> None:
    client = ComfyClient(fake.url, timeout=2)
    try:
        fake.die()
        with pytest.raises(ComfyRefused):  # nothing listens: certain the call never arrived
            await client.system_stats()
        with pytest.raises(ComfyRefused):
            await client.connect_events("x")
        fake.reject(500, paths=("/prompt",))
        await fake.restart()
        with pytest.raises(ComfyUnavailable) as answered:
            await client.submit(empty_graph())
        assert not isinstance(answered.value, ComfyRefused)  # it answered, outside contract
    finally:
        await client.close()


async def test_the_client_never_sends_an_origin(fake: FakeComfy) -> None:
    # The fake answers 403 to an Origin that differs from a loopback Host, as the
    # real server does; "localhost" differs from the client's 127.0.0.1.
    client = ComfyClient(fake.url.replace("127.0.0.1", "localhost"))
    try:
        assert (await client.queue()).remaining == 0
        async with client.events("o") as stream:
            first = await anext(aiter(stream))
        assert isinstance(first, ComfyEvent)
        assert first.type == "status"
    finally:
        await client.close()


async def test_a_name_that_does_not_resolve_is_unreached_not_refused() -> None:
    # nothing is known of the process behind it: not taken for a dead server
    client = ComfyClient("http://comfy.invalid:8188", timeout=5)
    try:
        with pytest.raises(ComfyUnreached) as unreached:
            await client.system_stats()
    finally:
        await client.close()
    assert not isinstance(unreached.value, ComfyRefused)
