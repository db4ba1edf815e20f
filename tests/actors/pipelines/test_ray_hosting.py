"""``hosting: ray`` on a real local Ray (``ray.init(num_cpus=2)``, no dashboard)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from actors.pipelines.handle import PipelineHandle
from actors.pipelines.ray_host import ACTOR_PREFIX
from actors.plugins import FrameIn, PipelineConfig, SimulatedParams
from engine.errors import ActorCrashed
from tests.actors.pipelines.kit import Rig
from tests.support import eventually

ray = pytest.importorskip("ray")

WAIT = 30.0


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def frame(payload: bytes = b"abc", **params: Any) -> FrameIn[SimulatedParams]:
    return FrameIn(memoryview(payload), "image/png", None, None, SimulatedParams(**params))


def replica_actors(pipeline: str) -> set[str]:
    names = ray.util.list_named_actors()
    return {name for name in names if name.startswith(f"{ACTOR_PREFIX}/pipelines/{pipeline}/")}


async def start(rig: Rig, name: str, **options: Any) -> PipelineHandle:
    config = PipelineConfig(name=name, kind="simulated", hosting="ray", options=options)
    return await rig.pipelines.init(config)


async def test_a_ray_hosted_pipeline_serves_frames(rig: Rig) -> None:
    handle = await start(rig, "rayed", cost_ms=1)
    assert len(replica_actors("rayed")) == 1
    answers = await asyncio.gather(*(handle.submit(frame(bytes([n])), WAIT) for n in range(6)))
    assert [bytes(answer.out.payload) for answer in answers] == [bytes([n]) for n in range(6)]


async def test_a_killed_ray_actor_fails_its_frames_and_easel_restarts_it(rig: Rig) -> None:
    handle = await start(rig, "fragile", cost_ms=3000)
    (first,) = replica_actors("fragile")
    events: list[str] = []
    handle.subscribe(events.append)
    in_flight = handle.submit(frame(b"doomed"), WAIT)
    await asyncio.sleep(0.5)  # well inside its 3 s model call
    ray.kill(ray.get_actor(first), no_restart=True)
    with pytest.raises(ActorCrashed):
        await in_flight
    await eventually(lambda: events == ["pipeline.restarting", "pipeline.ready"], WAIT)
    (second,) = replica_actors("fragile")
    assert second != first  # a new Ray actor, made by Easel's supervisor, not Ray's
    answer = await handle.submit(frame(b"after"), WAIT)
    assert bytes(answer.out.payload) == b"after"


async def test_a_reload_swaps_ray_generations(rig: Rig) -> None:
    handle = await start(rig, "swapped", cost_ms=1)
    (old,) = replica_actors("swapped")
    config = handle.config.model_copy(update={"options": {"cost_ms": 2}})
    await rig.pipelines.reload("swapped", config)
    assert handle.generation == 2
    await eventually(lambda: old not in replica_actors("swapped"), WAIT)
    (new,) = replica_actors("swapped")
    assert "/g2-" in new
    answer = await handle.submit(frame(b"new"), WAIT)
    assert bytes(answer.out.payload) == b"new"


async def test_a_ray_replica_takes_the_resources_its_config_asks_for(rig: Rig) -> None:
    config = PipelineConfig(
        name="placed",
        kind="simulated",
        hosting="ray",
        resources={"num_cpus": 1},
        options={"cost_ms": 1},
    )
    await rig.pipelines.init(config)
    await eventually(lambda: ray.available_resources().get("CPU", 0.0) == 1.0, WAIT)
    await rig.pipelines.shutdown("placed")
    await eventually(lambda: ray.available_resources().get("CPU", 0.0) == 2.0, WAIT)
