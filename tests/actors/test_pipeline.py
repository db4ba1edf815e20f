"""Which actor hosts a pipeline replica: a thread for blocking kinds, the loop otherwise."""

from __future__ import annotations

import asyncio

from actors.metrics import RealtimeMetrics
from actors.pipeline import (
    LoopPipelineReplica,
    PipelineHandle,
    PipelineReplica,
    Room,
    replica_factory,
)
from actors.pipelines import ImageFx, Passthrough, PipelineConfig, Simulated
from engine.metrics import new_registry


async def test_blocking_kinds_get_threads_and_non_blocking_kinds_the_loop() -> None:
    metrics = RealtimeMetrics(new_registry())
    for plugin, host in (
        (Passthrough, LoopPipelineReplica),
        (ImageFx, PipelineReplica),
        (Simulated, PipelineReplica),
    ):
        config = PipelineConfig(name=plugin.name, kind=plugin.name)
        handle = PipelineHandle(config, plugin, metrics)
        replica = replica_factory(plugin, config, handle)()
        assert type(replica) is host
        assert replica.core.instance is None  # loading happens in on_start, on its host


async def test_room_admits_up_to_capacity_then_in_fifo_order() -> None:
    room = Room(2)
    await room.acquire()
    await room.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await room.acquire()
        order.append(n)

    waiters = [asyncio.ensure_future(wait(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert (room.used, order) == (2, [])
    room.release()
    await asyncio.sleep(0)
    assert order == [0]  # a released slot goes to the longest waiter
    room.release()
    room.release()
    await asyncio.gather(*waiters)
    assert (order, room.used) == ([0, 1, 2], 2)


async def test_room_cancelled_waiters_and_resizing() -> None:
    room = Room(1)
    await room.acquire()
    cancelled = asyncio.ensure_future(room.acquire())
    kept = asyncio.ensure_future(room.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    room.resize(2)  # a reload added a replica: the next waiter gets in at once
    await kept
    assert room.used == 2
    room.resize(1)  # shrinking: slots drain away as they are released
    room.release()
    assert room.used == 1
    room.release()
    assert room.used == 0
