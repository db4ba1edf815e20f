"""Runners: a busy loop actor shares the loop; cancellation inside and around an
incarnation ends it the way a user can see (answers, hooks, supervision, threads)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.actor import LoopActor, ThreadActor
from engine.engine import Engine
from engine.errors import ActorCrashed, ActorStopped
from engine.ref import ActorState
from engine.supervisor import ActorSpec, Restart, Supervisor
from tests.engine.actors import CANCELLED, Journal, loop_actor
from tests.support import eventually


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


async def test_a_cancelled_await_inside_receive_is_a_crash(engine: Engine) -> None:
    journal = Journal()
    spec = ActorSpec("w", loop_actor("w", journal), restart=Restart.TRANSIENT)
    ref = await engine.root.start_child(spec)
    assert not isinstance(ref, Supervisor)
    with pytest.raises(ActorCrashed, match="CancelledError") as info:
        await ref.ask(CANCELLED, timeout=2)  # at once, not after the timeout
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    # a crash, not a normal exit: on_failure runs and the transient child is restarted
    await eventually(lambda: journal.of("start", "w") == [1, 2])
    assert journal.of("failure", "w") == [""]
    assert journal.of("stop", "w") == []
    assert await ref.ask("still supervised") == "still supervised"


async def test_an_ask_in_flight_when_a_stop_cancels_the_actor_fails_at_once(
    engine: Engine,
) -> None:
    journal = Journal()
    spec = ActorSpec("slow", loop_actor("slow", journal), shutdown_timeout=0.05)
    ref = await engine.root.start_child(spec)
    assert not isinstance(ref, Supervisor)
    answer = asyncio.ensure_future(ref.ask(("sleep", 30), timeout=2))
    await eventually(lambda: journal.of("msg", "slow") == [("sleep", 30)])
    await engine.root.terminate_child("slow")  # cancels it after 0.05 s
    with pytest.raises(ActorStopped):
        await answer
    assert ref.state is ActorState.STOPPED
    assert journal.of("failure", "slow") == []


class SlowStart(ThreadActor[str, str]):
    threads: list[threading.Thread] = []

    def on_start(self) -> None:
        SlowStart.threads.append(threading.current_thread())
        time.sleep(0.3)

    def receive(self, message: str) -> str:
        return message


async def test_a_cancelled_start_of_a_thread_actor_ends_its_thread(engine: Engine) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    SlowStart.threads.clear()
    starting = asyncio.ensure_future(engine.root.start_child(ActorSpec("slow", SlowStart)))
    await eventually(lambda: len(SlowStart.threads) == 1)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await eventually(lambda: not SlowStart.threads[0].is_alive())  # on_start ends, then it
    await asyncio.sleep(0.05)  # the thread's last report reaches the loop
    assert loop_errors == []
    assert engine.root.children() == []


STUCK_THREAD_THEN_EXIT = """
import asyncio, threading
from engine import ActorSpec, Engine, Settings, ThreadActor

class Stuck(ThreadActor):
    def receive(self, message):
        return message

    def on_stop(self):
        threading.Event().wait()  # forever

async def main():
    spec = ActorSpec("stuck", Stuck, shutdown_timeout=0.1)
    engine = Engine(Settings(), [spec])
    await engine.start()
    await engine.stop()
    print("stopped", flush=True)

asyncio.run(main())
"""


def test_a_thread_abandoned_at_its_shutdown_timeout_does_not_keep_the_process() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", STUCK_THREAD_THEN_EXIT],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: the process exits right after "stopped"
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "stopped\n"), result.stderr
    assert "did not stop within 0.10s; abandoning its thread" in result.stderr
