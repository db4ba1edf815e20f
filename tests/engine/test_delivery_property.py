"""Delivery property: no accepted message is lost or duplicated, per-sender order holds.

Random programs of tells, asks (from the loop and from a plain thread), crash-inducing
messages, supervisor restarts and terminate/start of the child run against a loop
actor and a thread actor supervised ``one_for_one``/``permanent`` with a tiny backoff.
After the program the supervisor is terminated, so every message still waiting becomes
a dead letter, and then:

* every accepted message (the send did not raise) was handled exactly once — the
  message that crashed the actor counts, it was recorded before raising — or was
  reported undeliverable (a dead letter; an ask fails with ``ActorStopped`` or
  ``Undeliverable``), never both, never neither;
* a refused message (``MailboxFull`` under ``reject``, ``ActorStopped`` once the
  mailbox is closed) was neither handled nor dead-lettered;
* each sender's handled messages come in the order that sender sent them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.actor import LoopActor, ThreadActor
from engine.errors import (
    ActorCrashed,
    ActorStopped,
    EaselError,
    MailboxFull,
    Undeliverable,
)
from engine.mailbox import MailboxSpec, Overflow
from engine.metrics import ActorMetrics, new_registry
from engine.ref import ActorRef
from engine.supervisor import (
    ActorSpec,
    Backoff,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from engine.system import ActorSystem


@dataclass(frozen=True, slots=True)
class Msg:
    sender: str
    seq: int
    crash: bool


class Boom(RuntimeError):
    """Raised by the test actors to crash an incarnation."""


Handled = list[Msg]


class RecordingLoopActor(LoopActor[Msg, int]):
    def __init__(self, handled: Handled) -> None:
        self.handled = handled

    async def receive(self, message: Msg) -> int:
        await asyncio.sleep(0)  # let senders interleave with handling
        self.handled.append(message)
        if message.crash:
            raise Boom(f"crash on {message}")
        return message.seq


class RecordingThreadActor(ThreadActor[Msg, int]):
    def __init__(self, handled: Handled) -> None:
        self.handled = handled

    def receive(self, message: Msg) -> int:
        time.sleep(0)  # give up the GIL so the loop and the thread sender interleave
        self.handled.append(message)
        if message.crash:
            raise Boom(f"crash on {message}")
        return message.seq


class BatchingRecordingThreadActor(RecordingThreadActor):
    """``max_batch`` with the default ``receive_batch``: a crash must lose nothing."""

    max_batch = 4


# --- the program ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tell:
    crash: bool


@dataclass(frozen=True)
class Ask:
    crash: bool


@dataclass(frozen=True)
class ThreadTell:
    crash: bool


@dataclass(frozen=True)
class ThreadAsk:
    crash: bool


@dataclass(frozen=True)
class RestartAll:
    """``stop_incarnation`` + ``start`` of the supervisor: the child restarts in place."""


@dataclass(frozen=True)
class Replace:
    """``terminate_child`` + ``start_child``: a new cell (and reference) at the same path."""


@dataclass(frozen=True)
class Pause:
    ticks: int


Op = Tell | Ask | ThreadTell | ThreadAsk | RestartAll | Replace | Pause

crashy = st.sampled_from([False, False, False, True])
ops: st.SearchStrategy[Op] = st.one_of(
    crashy.map(Tell),
    crashy.map(Ask),
    crashy.map(ThreadTell),
    crashy.map(ThreadAsk),
    st.just(RestartAll()),
    st.just(Replace()),
    st.integers(0, 3).map(Pause),
)
programs = st.lists(ops, min_size=1, max_size=40)

ASK_FAILED_UNDELIVERED = (ActorStopped, Undeliverable)


@dataclass
class Ledger:
    """What the senders saw. Every key is ``(sender, seq)``."""

    accepted: set[tuple[str, int]] = field(default_factory=set)
    refused: set[tuple[str, int]] = field(default_factory=set)
    ask_undelivered: set[tuple[str, int]] = field(default_factory=set)
    ask_answered: set[tuple[str, int]] = field(default_factory=set)


def _key(message: Msg) -> tuple[str, int]:
    return (message.sender, message.seq)


class Harness:
    def __init__(self, actor: str, mailbox: MailboxSpec) -> None:
        self.actor = actor
        self.mailbox = mailbox
        self.handled: Handled = []
        self.ledger = Ledger()
        self.seqs = {"loop": itertools.count(), "thread": itertools.count()}
        self.generation = itertools.count()
        self.tasks: list[asyncio.Task[None]] = []
        self.sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sender")
        self.thread_jobs: list[concurrent.futures.Future[None]] = []

    def spec(self) -> ActorSpec:
        factory: Callable[[], LoopActor[Msg, int] | ThreadActor[Msg, int]]
        if self.actor == "loop":
            factory = lambda: RecordingLoopActor(self.handled)  # noqa: E731
        elif self.actor == "thread":
            factory = lambda: RecordingThreadActor(self.handled)  # noqa: E731
        else:
            factory = lambda: BatchingRecordingThreadActor(self.handled)  # noqa: E731
        return ActorSpec(
            id="child",
            factory=factory,
            restart=Restart.PERMANENT,
            shutdown_timeout=5.0,
            mailbox=self.mailbox,
        )

    async def start(self) -> None:
        self.system = ActorSystem(ActorMetrics(new_registry()), dead_letter_capacity=100_000)
        self.supervisor = Supervisor(
            self.system,
            SupervisorSpec(
                id="root",
                strategy=Strategy.ONE_FOR_ONE,
                max_restarts=1_000_000,
                period=1.0,
                backoff=Backoff(initial=0.001, maximum=0.004, jitter=0.2),
                children=(self.spec(),),
            ),
            "",
        )
        await self.supervisor.start()
        self.ref: ActorRef[Msg, int] = self._current_ref()

    def _current_ref(self) -> ActorRef[Msg, int]:
        node = self.supervisor.child("child")
        assert not isinstance(node, Supervisor)
        return node.ref

    def _next(self, sender: str, crash: bool) -> Msg:
        return Msg(sender, next(self.seqs[sender]), crash)

    # --- senders ------------------------------------------------------------------

    def _tell(self, sender: str, crash: bool) -> None:
        message = self._next(sender, crash)
        try:
            self.ref.tell(message)
        except (MailboxFull, ActorStopped):
            self.ledger.refused.add(_key(message))
        else:
            self.ledger.accepted.add(_key(message))

    def _record_ask(self, message: Msg, error: BaseException | None) -> None:
        key = _key(message)
        if error is None or isinstance(error, ActorCrashed):
            self.ledger.accepted.add(key)
            self.ledger.ask_answered.add(key)
        elif isinstance(error, MailboxFull):
            self.ledger.refused.add(key)
        elif isinstance(error, ASK_FAILED_UNDELIVERED):
            # Refused at the door (mailbox closed) or reported undeliverable later;
            # the dead letters tell which, and the checks below hold it either way.
            self.ledger.ask_undelivered.add(key)
        else:
            raise AssertionError(f"ask for {message} failed unexpectedly: {error!r}")

    async def _ask(self, crash: bool) -> None:
        # The sequence number is taken in the same step as the post, so the loop
        # sender's numbers follow its posting order even with many asks in flight.
        message = self._next("loop", crash)
        try:
            await self.ref.ask(message, timeout=20.0)
        except Exception as error:
            self._record_ask(message, error)
        else:
            self._record_ask(message, None)

    def _thread_ask(self, crash: bool) -> None:
        message = self._next("thread", crash)
        try:
            self.ref.ask_blocking(message, timeout=20.0)
        except Exception as error:
            self._record_ask(message, error)
        else:
            self._record_ask(message, None)

    async def run(self, program: list[Op]) -> None:
        for op in program:
            if isinstance(op, Tell):
                self._tell("loop", op.crash)
            elif isinstance(op, Ask):
                self.tasks.append(asyncio.create_task(self._ask(op.crash)))
            elif isinstance(op, ThreadTell):
                job = self.sender.submit(self._tell, "thread", op.crash)
                self.thread_jobs.append(job)
            elif isinstance(op, ThreadAsk):
                self.thread_jobs.append(self.sender.submit(self._thread_ask, op.crash))
            elif isinstance(op, RestartAll):
                await self.supervisor.stop_incarnation()
                await self.supervisor.start()
            elif isinstance(op, Replace):
                await self.supervisor.terminate_child("child")
                await self.supervisor.start_child(self.spec())
                self.ref = self._current_ref()
            else:
                for _ in range(op.ticks):
                    await asyncio.sleep(0.001)

    async def finish(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)
        loop = asyncio.get_running_loop()
        for job in self.thread_jobs:
            await asyncio.wait_for(asyncio.wrap_future(job, loop=loop), 30)
        self.sender.shutdown()
        await self.supervisor.terminate()

    def check(self) -> None:
        ledger = self.ledger
        handled = Counter(_key(m) for m in self.handled)
        dead = Counter(
            _key(letter.message)
            for letter in self.system.dead_letters
            if isinstance(letter.message, Msg)
        )
        duplicated = {k: n for k, n in handled.items() if n > 1}
        assert not duplicated, f"handled more than once: {duplicated}"
        twice_dead = {k: n for k, n in dead.items() if n > 1}
        assert not twice_dead, f"dead-lettered more than once: {twice_dead}"

        for key in ledger.accepted:
            outcome = handled[key] + dead[key]
            assert outcome == 1, f"{key}: handled {handled[key]}x, dead-lettered {dead[key]}x"
        for key in ledger.ask_answered:
            assert handled[key] == 1, f"{key} was answered but never handled"
        for key in ledger.ask_undelivered:
            assert handled[key] == 0, f"{key} failed as undeliverable yet was handled"
        for key in ledger.refused:
            assert handled[key] == 0, f"refused {key} was handled"
            assert dead[key] == 0, f"refused {key} was dead-lettered"
        sent = ledger.accepted | ledger.refused | ledger.ask_undelivered
        stray = (set(handled) | set(dead)) - sent
        assert not stray, f"handled or dead-lettered but never sent: {stray}"

        for sender in ("loop", "thread"):
            order = [m.seq for m in self.handled if m.sender == sender]
            assert order == sorted(order), f"{sender} order broken: {order}"


MAILBOXES = {
    "roomy": MailboxSpec(capacity=1024),
    "reject": MailboxSpec(capacity=2, overflow=Overflow.REJECT),
    "drop_oldest": MailboxSpec(capacity=2, overflow=Overflow.DROP_OLDEST),
    "drop_newest": MailboxSpec(capacity=2, overflow=Overflow.DROP_NEWEST),
}


async def _scenario(actor: str, mailbox: MailboxSpec, program: list[Op]) -> Harness:
    harness = Harness(actor, mailbox)
    await harness.start()
    try:
        await harness.run(program)
    finally:
        await harness.finish()
    return harness


@pytest.mark.parametrize("actor", ["loop", "thread", "thread_batching"])
@pytest.mark.parametrize("mailbox", list(MAILBOXES))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(program=programs)
def test_every_accepted_message_is_handled_once_or_dead_lettered(
    actor: str, mailbox: str, program: list[Op]
) -> None:
    harness = asyncio.run(_scenario(actor, MAILBOXES[mailbox], program))
    harness.check()


def test_overflow_policies_report_what_they_drop() -> None:
    """A deterministic slice of the property: a paused actor and a 2-slot mailbox."""

    async def scenario(overflow: Overflow) -> tuple[list[Any], list[Any], list[str]]:
        handled: Handled = []
        gate = asyncio.Event()

        class Gated(LoopActor[Msg, int]):
            async def receive(self, message: Msg) -> int:
                await gate.wait()
                handled.append(message)
                return message.seq

        system = ActorSystem(ActorMetrics(new_registry()))
        ref = await system.spawn("/gated", Gated, mailbox=MailboxSpec(2, overflow))
        refused: list[Any] = []
        for seq in range(5):
            try:
                ref.tell(Msg("loop", seq, crash=False))
            except MailboxFull:
                refused.append(seq)
            await asyncio.sleep(0)  # the first message is taken and blocks on the gate
        gate.set()
        await asyncio.sleep(0.01)
        await system.shutdown(1.0)
        dead = [letter.message.seq for letter in system.dead_letters]
        return [m.seq for m in handled], dead + refused, [d.reason for d in system.dead_letters]

    assert asyncio.run(scenario(Overflow.REJECT)) == ([0, 1, 2], [3, 4], [])
    assert asyncio.run(scenario(Overflow.DROP_NEWEST)) == (
        [0, 1, 2],
        [3, 4],
        ["mailbox_overflow", "mailbox_overflow"],
    )
    assert asyncio.run(scenario(Overflow.DROP_OLDEST)) == (
        [0, 3, 4],
        [1, 2],
        ["mailbox_overflow", "mailbox_overflow"],
    )


def test_told_messages_in_a_crashed_micro_batch_are_not_lost() -> None:
    """With ``max_batch > 1`` and the default ``receive_batch``, a crash on one message
    must not swallow the tells taken with it: they wait for the next incarnation."""
    handled: Handled = []
    gate = threading.Event()

    class Batched(ThreadActor[Msg, int]):
        max_batch = 4

        def receive(self, message: Msg) -> int:
            gate.wait(5.0)
            handled.append(message)
            if message.crash:
                raise Boom(f"crash on {message}")
            return message.seq

    async def scenario() -> list[tuple[str, int]]:
        system = ActorSystem(ActorMetrics(new_registry()))
        ref = await system.spawn("/batched", Batched)
        ref.tell(Msg("loop", 0, crash=False))  # taken alone; holds the thread at the gate
        await asyncio.sleep(0.05)
        for seq in (1, 2, 3):  # one batch of three; the middle one crashes the actor
            ref.tell(Msg("loop", seq, crash=seq == 2))
        gate.set()
        await asyncio.sleep(0.2)
        await system.shutdown(1.0)
        reported = {_key(m) for m in handled} | {
            _key(letter.message) for letter in system.dead_letters
        }
        return sorted({("loop", seq) for seq in range(4)} - reported)

    assert asyncio.run(scenario()) == []


def test_told_messages_in_a_crashed_custom_batch_are_reported() -> None:
    gate = threading.Event()

    class Batched(ThreadActor[Msg, int]):
        max_batch = 4

        def receive_batch(self, messages: Sequence[Msg]) -> Sequence[int | EaselError]:
            gate.wait(5.0)
            if any(m.crash for m in messages):
                raise Boom("the batch crashed")
            return [m.seq for m in messages]

    async def scenario() -> list[int]:
        system = ActorSystem(ActorMetrics(new_registry()))
        ref = await system.spawn("/batched", Batched)
        ref.tell(Msg("loop", 0, crash=False))
        await asyncio.sleep(0.05)
        for seq in (1, 2, 3):  # one batch; it crashes, none of it is handled
            ref.tell(Msg("loop", seq, crash=seq == 2))
        gate.set()
        await asyncio.sleep(0.2)
        await system.shutdown(1.0)
        return sorted(letter.message.seq for letter in system.dead_letters)

    assert asyncio.run(scenario()) == [1, 2, 3]
