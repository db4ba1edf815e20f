"""The event loop never blocks on an actor (ARCHITECTURE §2).

Eight thread actors each sleep 0.2 s per message while the loop keeps 1,000 asks to
them (and 1,000 to loop actors) in flight. A 1 ms ticker on the same loop measures
how late it runs; the worst lag must stay under 50 ms. This is a correctness bound,
not a performance target: anything that waits on a thread from the loop (a pykka
``Future.get()``, a lock held across a blocking call) shows up as lag of ~0.2 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from engine.actor import LoopActor, ThreadActor
from engine.errors import EaselError
from engine.metrics import ActorMetrics, new_registry
from engine.ref import ActorRef
from engine.system import ActorSystem

THREAD_ACTORS = 8
ASKS = 1_000
WORK_SECONDS = 0.2
TICK = 0.001
MAX_LAG = 0.050


class Sleepy(ThreadActor[int, int]):
    """Blocks its own thread per message, as inference would."""

    def receive(self, message: int) -> int:
        time.sleep(WORK_SECONDS)
        return message


class Sleepy8(Sleepy):
    max_batch = 8
    """Micro-batches, so 1,000 asks over 8 actors finish in a few seconds."""

    def receive_batch(self, messages: Sequence[int]) -> Sequence[int | EaselError]:
        time.sleep(WORK_SECONDS)
        return list(messages)


class Echo(LoopActor[int, int]):
    async def receive(self, message: int) -> int:
        await asyncio.sleep(0)
        return message


async def _worst_lag_while(work: asyncio.Future[Any]) -> float:
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not work.done():
        expected = loop.time() + TICK
        await asyncio.sleep(TICK)
        worst = max(worst, loop.time() - expected)
    return worst


async def test_loop_lag_stays_small_while_thread_actors_block() -> None:
    system = ActorSystem(ActorMetrics(new_registry()))
    sleepy: list[ActorRef[int, int]] = [
        await system.spawn(f"/sleepy/{i}", Sleepy8) for i in range(THREAD_ACTORS)
    ]
    echoes: list[ActorRef[int, int]] = [
        await system.spawn(f"/echo/{i}", Echo) for i in range(THREAD_ACTORS)
    ]
    try:
        # Every thread is busy before the measurement starts.
        for ref in sleepy:
            ref.tell(-1)
        await asyncio.sleep(0.01)

        asks = [sleepy[i % THREAD_ACTORS].ask(i, timeout=60.0) for i in range(ASKS)]
        asks += [echoes[i % THREAD_ACTORS].ask(i, timeout=60.0) for i in range(ASKS)]
        started = time.perf_counter()
        work = asyncio.gather(*asks)
        worst = await _worst_lag_while(work)
        answers = await work
        elapsed = time.perf_counter() - started
    finally:
        await system.shutdown(5.0)

    assert answers == list(range(ASKS)) * 2
    # The thread actors really were busy for the whole measurement: 125 asks per
    # actor in batches of 8 is at least 16 sleeps of 0.2 s.
    assert elapsed >= 15 * WORK_SECONDS
    assert worst < MAX_LAG, f"the loop was blocked for {worst * 1000:.1f} ms"


async def test_loop_lag_stays_small_while_one_message_per_thread_blocks() -> None:
    """Without batching: 1,000 asks queue behind 8 sleeping threads for the whole run."""
    system = ActorSystem(ActorMetrics(new_registry()))
    sleepy = [await system.spawn(f"/sleepy/{i}", Sleepy) for i in range(THREAD_ACTORS)]
    try:
        asks = [sleepy[i % THREAD_ACTORS].ask(i, timeout=0.5) for i in range(ASKS)]
        work = asyncio.gather(*asks, return_exceptions=True)
        worst = await _worst_lag_while(work)
        outcomes = await work
    finally:
        await system.shutdown(5.0)

    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    # 0.5 s allows two or three messages per thread; the rest time out on the loop.
    assert THREAD_ACTORS <= len(answered) <= 4 * THREAD_ACTORS
    assert worst < MAX_LAG, f"the loop was blocked for {worst * 1000:.1f} ms"
