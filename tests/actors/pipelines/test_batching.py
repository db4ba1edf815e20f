"""Latency-bounded batching: a free replica takes what waits; a max wait is opt-in."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from actors.pipelines.admission import room_for
from actors.pipelines.handle import PipelineHandle
from actors.pipelines.service import PipelineService
from actors.plugins import (
    BUILTIN_PIPELINES,
    Answer,
    FrameIn,
    NoParams,
    Pipeline,
    PipelineCatalog,
    PipelineConfig,
)
from actors.plugins.passthrough import echo
from tests.actors.pipelines.kit import Rig, no_entry_points
from tests.support import eventually

WAIT = 5.0


class Record:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.hold = threading.Event()
        self.inside = threading.Event()


RECORD = Record()


class Batches(Pipeline[NoParams]):
    """Records each batch's size; the first batch waits for ``RECORD.hold``."""

    name = "batches"
    params_model = NoParams
    max_batch = 4

    def process(self, batch: Sequence[FrameIn[NoParams]]) -> list[Answer]:
        RECORD.sizes.append(len(batch))
        RECORD.inside.set()
        RECORD.hold.wait(WAIT)
        return [echo(frame) for frame in batch]


class Patient(Batches):
    """The same, but asks for a batch to wait up to 3 s to fill."""

    name = "patient"
    max_wait_ms = 3000.0


async def start(rig: Rig, kind: str) -> PipelineHandle:
    global RECORD
    RECORD = Record()
    catalog = PipelineCatalog((*BUILTIN_PIPELINES, Batches, Patient), no_entry_points)
    service = PipelineService(rig.pipelines_group, catalog, rig.metrics, None, drain_timeout=5.0)
    return await service.init(PipelineConfig(name=kind, kind=kind))


def frame(tag: int) -> FrameIn[NoParams]:
    return FrameIn(f"{tag}".encode(), "image/png", None, None, NoParams())


async def test_a_free_replica_takes_what_waits_and_no_more(rig: Rig) -> None:
    handle = await start(rig, "batches")
    first = handle.submit(frame(0), WAIT)
    await eventually(RECORD.inside.is_set)
    rest = [handle.submit(frame(tag), WAIT) for tag in range(1, 4)]
    RECORD.hold.set()
    await asyncio.gather(first, *rest)
    # the first frame did not wait for company; the next batch is what had queued
    assert RECORD.sizes == [1, 3]
    alone = await handle.submit(frame(9), WAIT)
    assert bytes(alone.out.payload) == b"9"
    assert RECORD.sizes == [1, 3, 1]


async def test_a_kind_may_ask_for_a_batch_to_wait_for_company(rig: Rig) -> None:
    handle = await start(rig, "patient")
    RECORD.hold.set()
    first = handle.submit(frame(0), WAIT)
    await asyncio.sleep(0.05)  # well within the kind's 3 s wait
    rest = [handle.submit(frame(tag), WAIT) for tag in range(1, 4)]
    await asyncio.gather(first, *rest)
    assert RECORD.sizes == [4]


def test_the_room_admits_one_batch_beyond_the_running_one_per_replica() -> None:
    config = PipelineConfig(name="b", kind="batches", replicas=3)
    assert room_for(config, Batches) == 3 * 2 * Batches.max_batch
    assert room_for(config.model_copy(update={"max_batch": 2}), Batches) == 3 * 2 * 2
