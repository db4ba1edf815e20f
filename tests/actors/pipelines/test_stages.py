"""Staged plug-ins: ``prepare`` and ``finish`` on the stage pool, around ``process``."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from PIL import Image

from actors.pipelines.handle import PipelineHandle
from actors.pipelines.service import PipelineService
from actors.plugins import (
    BUILTIN_PIPELINES,
    Answer,
    FrameIn,
    FrameOut,
    NoParams,
    Pipeline,
    PipelineCatalog,
    PipelineConfig,
    SimulatedParams,
)
from engine.errors import BadContent, PipelineError
from tests.actors.pipelines.kit import Rig, no_entry_points
from tests.support import eventually

WAIT = 5.0


class Gate:
    """What the staged test plug-in did, on which threads; steered by the test."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.in_process = threading.Event()
        self.prepared: list[bytes] = []
        self.threads: dict[str, set[str]] = {"prepare": set(), "process": set(), "finish": set()}
        self.loads = 0

    def saw(self, stage: str) -> None:
        self.threads[stage].add(threading.current_thread().name)


GATE = Gate()


class Staged(Pipeline[NoParams]):
    """Upper-cases in ``prepare``, holds in ``process``, appends ``!`` in ``finish``.

    A payload ``bad`` is refused by ``prepare``; ``boom`` breaks ``finish``."""

    name = "staged"
    params_model = NoParams
    max_batch = 4

    def load(self) -> None:
        GATE.loads += 1

    def prepare(self, frame: FrameIn[NoParams]) -> bytes:
        GATE.saw("prepare")
        data = bytes(frame.payload)
        if data == b"bad":
            raise BadContent("not a frame")
        GATE.prepared.append(data)
        return data.upper()

    def process(self, batch: Sequence[FrameIn[NoParams]]) -> list[Any]:
        GATE.saw("process")
        GATE.in_process.set()
        GATE.release.wait(WAIT)
        return [frame.data for frame in batch]

    def finish(self, frame: FrameIn[NoParams], output: Any) -> Answer:
        GATE.saw("finish")
        if output == b"BOOM":
            raise RuntimeError("finish broke")
        return FrameOut(output + b"!", frame.content_type)


@pytest.fixture
async def staged(rig: Rig) -> AsyncIterator[PipelineHandle]:
    global GATE
    GATE = Gate()
    catalog = PipelineCatalog((*BUILTIN_PIPELINES, Staged), no_entry_points)
    service = PipelineService(rig.pipelines_group, catalog, rig.metrics, None, drain_timeout=5.0)
    handle = await service.init(PipelineConfig(name="staged", kind="staged"))
    try:
        yield handle
    finally:
        GATE.release.set()


def frame(payload: bytes, content_type: str = "image/png", params: Any = None) -> FrameIn[Any]:
    return FrameIn(payload, content_type, None, None, params or NoParams())


async def test_prepare_and_finish_run_on_the_pool_around_process(
    staged: PipelineHandle,
) -> None:
    GATE.release.set()
    answer = await staged.submit(frame(b"abc"), WAIT)
    assert bytes(answer.out.payload) == b"ABC!"
    assert GATE.threads["prepare"]
    assert GATE.threads["finish"]
    assert all(name.startswith("easel-stage") for name in GATE.threads["prepare"])
    assert all(name.startswith("easel-stage") for name in GATE.threads["finish"])
    assert not GATE.threads["process"] & GATE.threads["prepare"]


async def test_frames_are_prepared_while_the_model_runs(staged: PipelineHandle) -> None:
    first = staged.submit(frame(b"one"), WAIT)
    await eventually(GATE.in_process.is_set)
    second = staged.submit(frame(b"two"), WAIT)
    await eventually(lambda: b"two" in GATE.prepared)
    assert not first.done()  # the model still holds the first frame
    GATE.release.set()
    assert bytes((await first).out.payload) == b"ONE!"
    assert bytes((await second).out.payload) == b"TWO!"


async def test_processed_is_called_when_the_model_is_done_before_finish(
    staged: PipelineHandle,
) -> None:
    GATE.release.set()
    order: list[str] = []
    future = staged.submit(frame(b"x"), WAIT, lambda: order.append("processed"))
    future.add_done_callback(lambda _: order.append("answered"))
    await future
    assert order == ["processed", "answered"]


async def test_a_stage_failure_fails_that_frame_only(staged: PipelineHandle) -> None:
    GATE.release.set()
    processed: list[int] = []
    with pytest.raises(BadContent):
        await staged.submit(frame(b"bad"), WAIT, lambda: processed.append(1))
    with pytest.raises(PipelineError, match="finish broke"):
        await staged.submit(frame(b"boom"), WAIT)
    assert processed == [1]  # a frame refused by prepare never reached the model
    assert bytes((await staged.submit(frame(b"ok"), WAIT)).out.payload) == b"OK!"
    assert GATE.loads == 1  # the replica never restarted


async def test_abandoned_frames_still_give_their_place_back(staged: PipelineHandle) -> None:
    processed: list[int] = []
    future = staged.submit(frame(b"gone"), WAIT, lambda: processed.append(1))
    await eventually(GATE.in_process.is_set)
    future.cancel()
    GATE.release.set()
    await eventually(lambda: processed == [1])


async def test_simulated_codec_decodes_and_encodes_as_configured(rig: Rig) -> None:
    handle = await rig.pipelines.init(
        PipelineConfig(
            name="codec",
            kind="simulated-codec",
            options={"cost_ms": 0, "quality": 70, "progressive": True},
        )
    )
    source = io.BytesIO()
    Image.new("RGB", (32, 16), (10, 200, 30)).save(source, format="JPEG", quality=95)
    jpeg = frame(source.getvalue(), "image/jpeg", SimulatedParams())
    futures = [handle.submit(jpeg, WAIT) for _ in range(6)]
    answers = await asyncio.gather(*futures)
    for answer in answers:
        assert answer.out.content_type == "image/jpeg"
        with Image.open(io.BytesIO(bytes(answer.out.payload))) as out:
            assert out.size == (32, 16)
            assert out.info.get("progressive")
    with pytest.raises(BadContent):
        await handle.submit(frame(b"not a jpeg", "image/jpeg", SimulatedParams()), WAIT)
