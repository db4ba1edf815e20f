"""ActorRef: tell/ask for both kinds, per-message errors, timeouts, stopped actors."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest

from engine.actor import LoopActor, ThreadActor
from engine.engine import Engine
from engine.errors import ActorCrashed, ActorStopped, AskTimeout, Invalid, MailboxFull
from engine.mailbox import MailboxSpec, Overflow
from engine.ref import ActorRef, ActorState
from engine.supervisor import ActorSpec
from tests.engine.actors import BAD, CRASH, Journal, loop_actor, thread_actor
from tests.support import eventually

KINDS = [loop_actor, thread_actor]


async def spawn(
    engine: Engine, make: Callable[[str, Journal], Any], mailbox: MailboxSpec | None = None
) -> tuple[ActorRef[Any, Any], Journal]:
    journal = Journal()
    ref = await engine.system.spawn("/t", make("t", journal), mailbox=mailbox)
    return ref, journal


@pytest.mark.parametrize("make", KINDS)
async def test_ask_and_tell(engine: Engine, make: Callable[[str, Journal], Any]) -> None:
    ref, journal = await spawn(engine, make)
    ref.tell("told")
    assert await ref.ask("asked") == "asked"
    assert journal.of("msg", "t") == ["told", "asked"]


@pytest.mark.parametrize("make", KINDS)
async def test_an_error_about_one_message_keeps_the_actor(
    engine: Engine, make: Callable[[str, Journal], Any]
) -> None:
    ref, journal = await spawn(engine, make)
    with pytest.raises(Invalid, match="bad message"):
        await ref.ask(BAD)
    assert await ref.ask("after") == "after"
    assert journal.of("start", "t") == [1]
    assert journal.of("failure", "t") == []


@pytest.mark.parametrize("make", KINDS)
async def test_unsupervised_crash_stops_the_actor_and_fails_fast(
    engine: Engine, make: Callable[[str, Journal], Any]
) -> None:
    ref, journal = await spawn(engine, make)
    with pytest.raises(ActorCrashed, match="crashed on purpose"):
        await ref.ask(CRASH)
    await eventually(lambda: ref.state is ActorState.STOPPED)
    assert journal.of("failure", "t") == ["t crashed on purpose"]
    with pytest.raises(ActorStopped):
        await ref.ask("anyone?", timeout=30)  # fails at once, not after 30 s
    with pytest.raises(ActorStopped):
        ref.tell("anyone?")


@pytest.mark.parametrize("make", KINDS)
async def test_ask_times_out(engine: Engine, make: Callable[[str, Journal], Any]) -> None:
    ref, _ = await spawn(engine, make)
    with pytest.raises(AskTimeout, match=r"did not answer within 0\.05s"):
        await ref.ask(("sleep", 0.5), timeout=0.05)
    assert await ref.ask("still here", timeout=5) == "still here"


@pytest.mark.parametrize("make", KINDS)
async def test_ask_blocking_from_a_thread(
    engine: Engine, make: Callable[[str, Journal], Any]
) -> None:
    ref, _ = await spawn(engine, make)
    answers: list[Any] = []

    def worker() -> None:
        answers.append(ref.ask_blocking("from a thread", timeout=5))
        try:
            ref.ask_blocking(("sleep", 0.5), timeout=0.05)
        except AskTimeout as error:
            answers.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert answers[0] == "from a thread"
    assert isinstance(answers[1], AskTimeout)


async def test_ask_blocking_on_the_loop_is_refused(engine: Engine) -> None:
    ref, _ = await spawn(engine, loop_actor)
    with pytest.raises(RuntimeError, match="would block the event loop"):
        ref.ask_blocking("x")


@pytest.mark.parametrize("make", KINDS)
async def test_full_mailbox_rejects_to_the_sender(
    engine: Engine, make: Callable[[str, Journal], Any]
) -> None:
    ref, journal = await spawn(engine, make, MailboxSpec(capacity=2, overflow=Overflow.REJECT))
    ref.tell(("sleep", 0.2))
    await eventually(lambda: journal.of("msg", "t") == [("sleep", 0.2)])
    ref.tell(1)
    ref.tell(2)
    with pytest.raises(MailboxFull):
        ref.tell(3)
    await eventually(lambda: journal.of("msg", "t")[1:] == [1, 2])
    assert list(engine.system.dead_letters) == []


@pytest.mark.parametrize(
    ("overflow", "kept", "dropped"),
    [(Overflow.DROP_OLDEST, [2, 3], [1]), (Overflow.DROP_NEWEST, [1, 2], [3])],
)
async def test_dropping_mailboxes_report_what_they_drop(
    engine: Engine, overflow: Overflow, kept: list[int], dropped: list[int]
) -> None:
    ref, journal = await spawn(engine, thread_actor, MailboxSpec(capacity=2, overflow=overflow))
    ref.tell(("sleep", 0.2))
    await eventually(lambda: journal.of("msg", "t") == [("sleep", 0.2)])
    for i in (1, 2, 3):
        ref.tell(i)
    await eventually(lambda: journal.of("msg", "t")[1:] == kept)
    letters = list(engine.system.dead_letters)
    assert [letter.message for letter in letters] == dropped
    assert {letter.reason for letter in letters} == {"mailbox_overflow"}


async def test_a_dropped_ask_fails_instead_of_hanging(engine: Engine) -> None:
    ref, journal = await spawn(
        engine, loop_actor, MailboxSpec(capacity=1, overflow=Overflow.DROP_OLDEST)
    )
    ref.tell(("sleep", 0.1))
    await eventually(lambda: len(journal.of("msg", "t")) == 1)
    first = asyncio.ensure_future(ref.ask("evicted", timeout=30))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(ref.ask("kept"))
    with pytest.raises(Exception, match="dropped") as info:
        await first
    assert info.value.__class__.__name__ == "Undeliverable"
    assert await second == "kept"


async def test_metrics_count_actors_restarts_and_handling(engine: Engine) -> None:
    journal = Journal()
    await engine.root.start_child(ActorSpec("m", loop_actor("m", journal)))
    ref = engine.system.lookup("/m")
    await ref.ask("x")
    with pytest.raises(ActorCrashed):
        await ref.ask(CRASH)
    await eventually(lambda: ref.state is ActorState.RUNNING and len(journal.of("start")) == 2)
    registry = engine.registry
    assert registry.get_sample_value("easel_actors", {"kind": "recorder", "state": "running"}) == 1
    assert registry.get_sample_value("easel_actor_restarts_total", {"kind": "recorder"}) == 1
    count = registry.get_sample_value("easel_actor_message_seconds_count", {"kind": "recorder"})
    assert count == 2
    depth = registry.get_sample_value("easel_actor_mailbox_depth", {"kind": "recorder"})
    assert depth == 0
    fast = registry.get_sample_value(
        "easel_actor_message_seconds_bucket", {"kind": "recorder", "le": "0.5"}
    )
    assert fast == 2  # cumulative buckets: both messages took well under 0.5 s
    await engine.root.terminate_child("m")
    count = registry.get_sample_value("easel_actor_message_seconds_count", {"kind": "recorder"})
    assert count == 2  # a stopped actor's counts are kept: counters never go back


async def test_a_message_dropped_for_a_tell_from_a_thread_is_reported_on_the_loop(
    engine: Engine,
) -> None:
    ref, journal = await spawn(
        engine, loop_actor, MailboxSpec(capacity=1, overflow=Overflow.DROP_NEWEST)
    )
    reported_on: list[int] = []
    engine.system.dead_letter_listeners.append(lambda _: reported_on.append(threading.get_ident()))
    ref.tell(("sleep", 0.2))
    await eventually(lambda: journal.of("msg", "t") == [("sleep", 0.2)])

    def sender() -> None:
        ref.tell("kept")
        ref.tell("dropped")

    await asyncio.get_running_loop().run_in_executor(None, sender)
    await eventually(lambda: len(reported_on) == 1)
    assert reported_on == [threading.get_ident()]  # listeners run on the loop
    assert [letter.message for letter in engine.system.dead_letters] == ["dropped"]


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf])
async def test_a_bad_ask_timeout_is_refused_before_sending(engine: Engine, timeout: float) -> None:
    ref, journal = await spawn(engine, loop_actor)
    with pytest.raises(ValueError, match="timeout"):
        await ref.ask("never sent", timeout=timeout)
    assert await ref.ask("after") == "after"
    assert journal.of("msg", "t") == ["after"]


async def test_a_bad_blocking_ask_timeout_is_refused_before_sending(engine: Engine) -> None:
    ref, journal = await spawn(engine, loop_actor)

    def worker() -> None:
        with pytest.raises(ValueError, match="timeout"):
            ref.ask_blocking("never sent", timeout=-1.0)

    await asyncio.get_running_loop().run_in_executor(None, worker)
    assert await ref.ask("after") == "after"
    assert journal.of("msg", "t") == ["after"]


class StopsAtOnce(LoopActor[str, str]):
    journal = Journal()

    async def on_start(self) -> None:
        self.context.stop()

    async def receive(self, message: str) -> str:
        return message

    async def on_stop(self) -> None:
        self.journal.add("stop", "loop")


class ThreadStopsAtOnce(ThreadActor[str, str]):
    journal = Journal()

    def on_start(self) -> None:
        self.context.stop()

    def receive(self, message: str) -> str:
        return message

    def on_stop(self) -> None:
        self.journal.add("stop", "thread")


@pytest.mark.parametrize("behaviour", [StopsAtOnce, ThreadStopsAtOnce])
async def test_stop_called_in_on_start_ends_the_actor_after_its_start(
    engine: Engine, behaviour: type[StopsAtOnce] | type[ThreadStopsAtOnce]
) -> None:
    behaviour.journal = Journal()
    ref = await engine.system.spawn("/t", behaviour)
    await eventually(lambda: ref.state is ActorState.STOPPED)
    assert len(behaviour.journal.of("stop")) == 1  # a normal exit: on_stop ran
