"""``hosting: process``: replicas in child processes that may die in any way."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from actors.pipelines.handle import PipelineHandle
from actors.pipelines.process import SHARED_BYTES
from actors.plugins import FrameIn, PipelineConfig, SimulatedParams
from engine.errors import ActorCrashed, Invalid
from tests.actors.pipelines.kit import SCRIPTED, Rig
from tests.support import eventually

WAIT = 10.0


def replica_children() -> set[int]:
    """Pids of this process's children that are multiprocessing spawn workers."""
    pids: set[int] = set()
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"multiprocessing.spawn" in cmdline:
                pids.add(int(pid))
    return pids


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def frame(payload: bytes = b"abc", **params: Any) -> FrameIn[SimulatedParams]:
    return FrameIn(payload, "image/png", None, None, SimulatedParams(**params))


async def start(rig: Rig, name: str = "proc", **options: Any) -> PipelineHandle:
    config = PipelineConfig(
        name=name, kind="simulated", hosting="process", options={"cost_ms": 1, **options}
    )
    return await rig.pipelines.init(config)


async def test_a_process_hosted_replica_serves_frames_from_a_child(rig: Rig) -> None:
    before = replica_children()
    handle = await start(rig)
    (child,) = replica_children() - before
    answers = await asyncio.gather(*(handle.submit(frame(bytes([n])), WAIT) for n in range(5)))
    assert [bytes(answer.out.payload) for answer in answers] == [bytes([n]) for n in range(5)]
    # payloads beyond the shared segment cross the pipe instead, in the same batch
    big = [os.urandom(SHARED_BYTES // 2 + 1) for _ in range(3)]
    echoed = await asyncio.gather(*(handle.submit(frame(payload), WAIT) for payload in big))
    assert [bytes(answer.out.payload) for answer in echoed] == big
    await rig.pipelines.shutdown("proc")
    await eventually(lambda: not alive(child))  # stopping the pipeline ends its child


@pytest.mark.parametrize("how", ["segv", "abort", "kill"])
async def test_a_dying_child_fails_its_frames_and_is_replaced(rig: Rig, how: str) -> None:
    other = await rig.pipelines.init(
        PipelineConfig(name="other", kind="simulated", options={"cost_ms": 1})
    )
    before = replica_children()
    handle = await start(rig, crash_native=how)
    (child,) = replica_children() - before
    events: list[str] = []
    handle.subscribe(events.append)
    doomed = handle.submit(frame(crash=True), WAIT)
    bystanders = [other.submit(frame(bytes([n])), WAIT) for n in range(20)]
    with pytest.raises(ActorCrashed, match="died"):
        await doomed
    for bystander in bystanders:  # another pipeline of the same engine never noticed
        await bystander
    await eventually(lambda: events == ["pipeline.restarting", "pipeline.ready"], WAIT)
    assert not alive(child)
    (replacement,) = replica_children() - before
    assert replacement != child
    answer = await handle.submit(frame(b"after"), WAIT)
    assert bytes(answer.out.payload) == b"after"


async def test_staged_kinds_prepare_here_and_process_in_the_child(rig: Rig) -> None:
    config = PipelineConfig(
        name="codec", kind="simulated-codec", hosting="process", options={"cost_ms": 1}
    )
    handle = await rig.pipelines.init(config)
    source = io.BytesIO()
    Image.new("RGB", (24, 12), (1, 2, 3)).save(source, format="JPEG")
    jpeg = FrameIn(source.getvalue(), "image/jpeg", None, None, SimulatedParams())
    answer = await handle.submit(jpeg, WAIT)
    with Image.open(io.BytesIO(bytes(answer.out.payload))) as out:
        assert out.size == (24, 12)


async def test_hosting_that_cannot_work_is_refused(rig: Rig) -> None:
    with pytest.raises(Invalid, match="loop"):
        await rig.pipelines.init(PipelineConfig(name="l", kind="simulated", hosting="loop"))
    with pytest.raises(Invalid, match="importable"):  # the scripted kind is a closure
        await rig.pipelines.init(PipelineConfig(name="s", kind=SCRIPTED, hosting="process"))
    thread = await rig.pipelines.init(
        PipelineConfig(name="t", kind="passthrough", hosting="thread")
    )
    assert (
        bytes((await thread.submit(FrameIn(b"x", "image/png", None, None, None), 5)).out.payload)
        == b"x"
    )
