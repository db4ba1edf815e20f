"""Direct calls: an idle loop actor with ``receive_now`` answers an ask made on the loop
in the asker's task; a busy actor, a tell or a crashed incarnation uses the mailbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from engine.actor import LoopActor
from engine.engine import Engine
from engine.errors import ActorCrashed, ActorStopped, Invalid
from engine.ref import ActorRef, ActorState
from engine.supervisor import ActorSpec, Supervisor
from tests.engine.actors import BAD, CANCELLED, CRASH, STOP, Journal, loop_actor
from tests.support import eventually

AGAIN = "again"
HOLD = "hold"


def direct_actor(name: str, journal: Journal) -> Callable[[], Any]:
    """A loop actor that takes direct calls. It answers ``m`` with ``(handler,
    incarnation, m)``, ``handler`` being ``"now"`` (a direct call) or ``"receive"``, and
    journals it under that handler. ``CRASH``, ``BAD``, ``STOP`` and ``CANCELLED`` work as
    in ``loop_actor``; ``(AGAIN, m)`` asks itself ``m`` and journals that ask's future
    under ``"inner"``; ``(HOLD, gate)`` keeps ``receive`` busy until ``gate`` is done."""

    class Direct(LoopActor[Any, Any]):
        kind = "direct"

        async def on_start(self) -> None:
            journal.add("start", name, self.context.incarnation)

        def receive_now(self, message: Any) -> Any:
            return self.handle("now", message)

        async def receive(self, message: Any) -> Any:
            if isinstance(message, tuple) and message[0] == HOLD:
                journal.add("holding", name)
                await message[1]
            return self.handle("receive", message)

        def handle(self, handler: str, message: Any) -> Any:
            journal.add(handler, name, message)
            if message == CRASH:
                raise RuntimeError(f"{name} crashed on purpose")
            if message == BAD:
                raise Invalid("bad message")
            if message == STOP:
                self.context.stop()
            if message == CANCELLED:
                cancelled = asyncio.get_running_loop().create_future()
                cancelled.cancel()
                cancelled.result()  # raises CancelledError, as in a handler inspecting it
            if isinstance(message, tuple) and message[0] == AGAIN:
                journal.add("inner", name, self.context.ref.ask_future(message[1]))
            return (handler, self.context.incarnation, message)

        async def on_failure(self, error: BaseException) -> None:
            journal.add("failure", name, str(error))

    return Direct


async def spawn_idle(
    engine: Engine, make: Callable[[str, Journal], Any] = direct_actor
) -> tuple[ActorRef[Any, Any], Journal]:
    journal = Journal()
    ref = await engine.system.spawn("/d", make("d", journal))
    await asyncio.sleep(0)  # its task starts and falls asleep on its doorbell
    return ref, journal


async def test_an_idle_actor_answers_an_ask_before_the_ask_returns(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    future = ref.ask_future("hi")
    assert future.done()
    assert future.result() == ("now", 1, "hi")
    assert await ref.ask("and again") == ("now", 1, "and again")
    assert journal.of("receive") == []


async def test_an_actor_without_receive_now_answers_through_its_mailbox(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine, loop_actor)
    future = ref.ask_future("hi")
    assert not future.done()
    assert journal.of("msg") == []
    assert await future == "hi"


async def test_asks_to_a_busy_actor_wait_in_its_mailbox_in_order(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ref.tell((HOLD, gate))
    await eventually(lambda: journal.of("holding") == [None])
    futures = [ref.ask_future(n) for n in range(3)]
    assert not any(future.done() for future in futures)
    assert ref.pending == 3
    gate.set_result(None)
    assert await asyncio.gather(*futures) == [("receive", 1, n) for n in range(3)]
    assert journal.of("now") == []
    # idle again: the next ask is direct
    assert ref.ask_future("after").result() == ("now", 1, "after")


async def test_a_message_queued_from_a_thread_is_not_overtaken_by_a_direct_call(
    engine: Engine,
) -> None:
    ref, journal = await spawn_idle(engine)
    thread = threading.Thread(target=ref.tell, args=("from a thread",))
    thread.start()
    thread.join()  # queued, but the wake-up it sent has not run on the loop yet
    future = ref.ask_future("from the loop")
    assert not future.done()
    assert await future == ("receive", 1, "from the loop")
    assert journal.of("receive") == ["from a thread", "from the loop"]


async def test_an_easel_error_from_receive_now_fails_only_that_ask(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    future = ref.ask_future(BAD)
    assert future.done()
    with pytest.raises(Invalid, match="bad message"):
        future.result()
    assert ref.ask_future("after").result() == ("now", 1, "after")  # still idle, still direct
    await asyncio.sleep(0.01)
    assert ref.state is ActorState.RUNNING
    assert journal.of("failure") == []


async def supervised_idle(engine: Engine) -> tuple[ActorRef[Any, Any], Journal]:
    journal = Journal()
    ref = await engine.root.start_child(ActorSpec("d", direct_actor("d", journal)))
    assert not isinstance(ref, Supervisor)
    await asyncio.sleep(0)
    return ref, journal


async def test_a_crash_in_receive_now_fails_the_ask_and_the_supervisor_restarts_the_actor(
    engine: Engine,
) -> None:
    ref, journal = await supervised_idle(engine)
    crashed = ref.ask_future(CRASH)
    assert crashed.done()
    with pytest.raises(ActorCrashed, match="crashed on purpose") as info:
        crashed.result()
    assert isinstance(info.value.__cause__, RuntimeError)
    # nothing else is sent: the crash alone ends the incarnation
    await eventually(lambda: journal.of("start", "d") == [1, 2])
    assert journal.of("failure", "d") == ["d crashed on purpose"]
    restarts = engine.registry.get_sample_value("easel_actor_restarts_total", {"kind": "direct"})
    assert restarts == 1
    await asyncio.sleep(0)
    assert ref.ask_future("direct again").result() == ("now", 2, "direct again")


async def test_a_message_sent_right_after_a_crash_in_receive_now_waits_for_the_restart(
    engine: Engine,
) -> None:
    ref, journal = await supervised_idle(engine)
    with pytest.raises(ActorCrashed):
        ref.ask_future(CRASH).result()
    after = ref.ask_future("right after")  # the crashed incarnation must not take it
    assert not after.done()
    assert await after == ("receive", 2, "right after")
    assert journal.of("now") == [CRASH]
    assert journal.of("failure", "d") == ["d crashed on purpose"]
    assert journal.of("start", "d") == [1, 2]


async def test_a_cancelled_error_from_receive_now_is_a_crash_like_in_receive(
    engine: Engine,
) -> None:
    ref, journal = await supervised_idle(engine)
    escaped: BaseException | None = None
    try:
        future = ref.ask_future(CANCELLED)
    except asyncio.CancelledError as error:
        escaped = error
    assert escaped is None, "the actor's CancelledError was raised in the asker's task"
    with pytest.raises(ActorCrashed, match="CancelledError"):
        future.result()
    await eventually(lambda: journal.of("start", "d") == [1, 2])


async def test_a_nested_direct_call_is_queued_not_recursive(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    outer = ref.ask_future((AGAIN, "inner"))
    assert outer.result() == ("now", 1, (AGAIN, "inner"))
    [inner] = journal.of("inner")
    assert not inner.done()  # the actor had a message in hand: the inner ask waits
    later = ref.ask_future("later")
    assert not later.done()  # the actor is awake for the queued one: no overtaking
    assert await inner == ("receive", 1, "inner")
    assert await later == ("receive", 1, "later")
    assert journal.of("now") == [(AGAIN, "inner")]
    assert journal.of("receive") == ["inner", "later"]


async def test_a_tell_to_an_idle_actor_goes_through_its_mailbox(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    ref.tell("told")
    assert ref.pending == 1
    assert journal.of("now") == []
    await eventually(lambda: journal.of("receive") == ["told"])
    assert journal.of("now") == []


async def test_an_actor_that_stops_in_receive_now_takes_no_more_direct_calls(
    engine: Engine,
) -> None:
    ref, journal = await spawn_idle(engine)
    assert ref.ask_future(STOP).result() == ("now", 1, STOP)
    after = ref.ask_future("after the stop")
    assert not after.done()
    with pytest.raises(ActorStopped):
        await after
    assert journal.of("now") == [STOP]
    assert journal.of("receive") == []


async def test_direct_calls_count_in_the_handling_time_histogram(engine: Engine) -> None:
    ref, journal = await spawn_idle(engine)
    for n in range(3):
        assert ref.ask_future(n).done()
    with pytest.raises(Invalid):
        await ref.ask(BAD)
    assert journal.of("now") == [0, 1, 2, BAD]
    registry = engine.registry
    count = registry.get_sample_value("easel_actor_message_seconds_count", {"kind": "direct"})
    assert count == 4
    fast = registry.get_sample_value(
        "easel_actor_message_seconds_bucket", {"kind": "direct", "le": "0.5"}
    )
    assert fast == 4
