"""Runners: a busy loop actor shares the loop; cancellation inside and around an
incarnation ends it the way a user can see (answers, hooks, supervision, threads)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from engine.actor import LoopActor
from engine.engine import Engine
from engine.settings import Settings


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    engine = Engine(Settings())
    await engine.start()
    yield engine
    await engine.stop()


class SelfTeller(LoopActor[str, None]):
    """Polls by telling itself, without ever suspending in ``receive``, for 2 s."""

    def __init__(self) -> None:
        self.until = time.monotonic() + 2.0

    async def receive(self, message: str) -> None:
        if time.monotonic() < self.until:
            self.context.ref.tell(message)


async def test_a_loop_actor_that_keeps_its_mailbox_full_lets_the_loop_run(
    engine: Engine,
) -> None:
    ref = await engine.system.spawn("/busy", SelfTeller)
    ref.tell("tick")
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    # liveness, not speed: without yielding, the sleep waits for the actor's 2 s
    assert time.perf_counter() - started < 1.0
    assert ref.pending == 1  # still polling
    await engine.system.shutdown(1.0)
