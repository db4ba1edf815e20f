"""The actor system: background work it keeps, and what its shutdown leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from engine import logcontext
from engine.actor import LoopActor
from engine.engine import Engine
from engine.errors import NotFound
from engine.ref import ActorState
from engine.settings import Settings
from tests.engine.actors import STOP, Journal, loop_actor, thread_actor
from tests.support import eventually


def pending_tasks() -> list[asyncio.Task[object]]:
    """Every unfinished task on this loop but the test's own."""
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def test_engine_stop_waits_for_background_work() -> None:
    engine = Engine(Settings())
    await engine.start()
    finished: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.05)
        finished.append("work")

    task = engine.system.background(work(), name="work")
    await engine.stop()
    assert task.done()
    assert finished == ["work"]
    assert pending_tasks() == []


async def test_background_work_still_running_at_the_shutdown_timeout_is_cancelled() -> None:
    engine = Engine(Settings(shutdown_timeout=0.1))
    await engine.start()
    task = engine.system.background(asyncio.Event().wait(), name="forever")
    await asyncio.wait_for(engine.stop(), 60)  # a hang guard, far past the timeout
    assert task.cancelled()
    assert pending_tasks() == []


async def test_a_failed_background_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(Settings())
    await engine.start()

    async def fails() -> None:
        raise RuntimeError("broken on purpose")

    with caplog.at_level("ERROR", logger="engine.system"):
        task = engine.system.background(fails(), name="fails")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # its done callbacks run
    await engine.stop()
    assert [r.getMessage() for r in caplog.records] == ["background task fails failed"]


@pytest.mark.parametrize("make", [loop_actor, thread_actor])
async def test_an_unsupervised_actor_that_ended_by_itself_leaves_no_task_after_stop(
    make: Callable[[str, Journal], Any],
) -> None:
    engine = Engine(Settings())
    await engine.start()
    journal = Journal()
    ref = await engine.system.spawn("/solo", make("solo", journal))
    ref.tell(STOP)
    ref.tell("never handled")
    await eventually(lambda: journal.of("stop", "solo") == [None])
    await engine.stop()
    assert ref.state is ActorState.STOPPED
    with pytest.raises(NotFound):
        engine.system.lookup("/solo")
    assert [letter.message for letter in engine.system.dead_letters] == ["never handled"]
    assert pending_tasks() == []


async def test_what_on_start_begins_does_not_speak_for_the_request_that_started_it() -> None:
    seen: list[dict[str, str]] = []

    class Timed(LoopActor[str, None]):
        async def on_start(self) -> None:
            seen.append(logcontext.current())  # on_start itself
            asyncio.get_running_loop().call_soon(lambda: seen.append(logcontext.current()))

        async def receive(self, message: str) -> None:
            return None

    engine = Engine(Settings())
    await engine.start()
    try:
        with logcontext.log_context(request_id="req-1"):
            await engine.system.spawn("timed", Timed)
        await eventually(lambda: len(seen) == 2)  # on_start, then its timer
    finally:
        await engine.stop()
    assert seen == [{}, {}]
