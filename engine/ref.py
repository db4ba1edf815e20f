"""Actor cells and the references that point at them.

A *cell* is the stable home of an actor: its path, its mailbox and its current
incarnation (a behaviour instance plus the runner that drives it). Supervisors restart
an actor by starting a new incarnation in the same cell, so every ``ActorRef`` handed
out stays valid and messages sent during the restart wait in the mailbox.

State machine (checked on every transition)::

    NEW ─► STARTING ─► RUNNING ─► RESTARTING ─► STARTING …
              │           │            │
              └───────────┴────────────┴─► STOPPING ─► STOPPED
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from engine.actor import ActorContext, LoopActor, ThreadActor
from engine.errors import ActorStopped, AskTimeout, Undeliverable
from engine.mailbox import Envelope, FutureReply, LoopReply, Mailbox, MailboxSpec
from engine.metrics import LocalHistogram
from engine.runners import LoopRunner, ThreadRunner

if TYPE_CHECKING:
    from engine.system import ActorSystem

__all__ = ["ActorRef", "ActorState", "Behaviour", "Cell", "ExitCallback"]

log = logging.getLogger(__name__)

M = TypeVar("M")
R = TypeVar("R")

Behaviour = LoopActor[Any, Any] | ThreadActor[Any, Any]
ExitCallback = Callable[[Any, int, BaseException | None], None]
"""How a node of the tree (a cell or a supervisor) tells its parent it ended: called
with the node, the incarnation that ended and the error (``None`` for a normal stop)."""
"""Called on the loop when an incarnation ends by itself: (cell, incarnation, error)."""


class ActorState(StrEnum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


_TRANSITIONS: dict[ActorState, frozenset[ActorState]] = {
    ActorState.NEW: frozenset({ActorState.STARTING, ActorState.STOPPING}),
    ActorState.STARTING: frozenset(
        {ActorState.RUNNING, ActorState.RESTARTING, ActorState.STOPPING}
    ),
    ActorState.RUNNING: frozenset({ActorState.RESTARTING, ActorState.STOPPING}),
    ActorState.RESTARTING: frozenset({ActorState.STARTING, ActorState.STOPPING}),
    ActorState.STOPPING: frozenset({ActorState.STOPPED}),
    ActorState.STOPPED: frozenset(),
}


class Cell(Generic[M, R]):
    """The stable home of one actor. Lifecycle methods run on the loop thread."""

    def __init__(
        self,
        system: ActorSystem,
        path: str,
        factory: Callable[[], LoopActor[M, R] | ThreadActor[M, R]],
        mailbox: MailboxSpec,
        kind: str,
    ) -> None:
        self.system = system
        self.path = path
        self.factory = factory
        self.kind = kind
        self.mailbox = Mailbox(mailbox)
        self.state = ActorState.NEW
        self.incarnation = 0
        self.on_exit: ExitCallback | None = None
        self.ref: ActorRef[M, R] = ActorRef(self)
        self.timings = LocalHistogram()
        self._runner: LoopRunner | ThreadRunner | None = None
        self._stop_asked = 0
        """The incarnation whose ``on_start`` called ``context.stop()``."""

    def _move(self, target: ActorState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.path}: cannot go from {self.state} to {target}")
        self.state = target

    # --- sending (any thread) ---------------------------------------------------

    def call_direct(self, message: Any, future: asyncio.Future[Any]) -> bool:
        """On the loop: let an idle loop actor that takes direct calls handle
        ``message`` in the caller's task (see ``LoopActor.receive_now``). Returns
        whether it did; ``future`` then holds the answer."""
        runner = self._runner
        return runner is not None and runner.direct and runner.call_direct(message, future)

    def post(self, envelope: Envelope) -> None:
        """Queue ``envelope``; raises ``ActorStopped`` or ``MailboxFull``."""
        wake, dropped = self.mailbox.put(envelope)
        if dropped is not None:
            self._lost(dropped, "mailbox_overflow")
        if wake:
            runner = self._runner
            if runner is not None:
                runner.wake()

    # --- lifecycle (loop thread) ------------------------------------------------

    async def start(self) -> None:
        """Start a new incarnation; raises what its ``on_start`` raises."""
        if self.mailbox.closed:
            raise ActorStopped(f"{self.path} is stopped")
        self._move(ActorState.STARTING)
        self.incarnation += 1
        incarnation = self.incarnation
        behaviour = self.factory()
        stop = functools.partial(self._stop_from_inside, incarnation)
        behaviour.context = ActorContext(self.ref, incarnation, stop)
        runner: LoopRunner | ThreadRunner
        observe = self.timings.observe
        if isinstance(behaviour, ThreadActor):
            runner = ThreadRunner(
                behaviour, self.mailbox, self.path, observe, self._ended, self._lost
            )
        else:
            runner = LoopRunner(behaviour, self.mailbox, self.path, observe, self._ended)
        try:
            await runner.start()
        except BaseException:
            if self.state is ActorState.STARTING:
                self._move(ActorState.RESTARTING)
            raise
        if self.state is not ActorState.STARTING:  # stopped while starting
            await self._stop_runner(runner, 1.0)
            return
        self._runner = runner
        self._move(ActorState.RUNNING)
        if self.mailbox.reschedule():
            runner.wake()
        if self._stop_asked == incarnation:
            runner.request_stop()

    def _lost(self, envelope: Envelope, reason: str) -> None:
        """From any thread: report a message that will never be handled, on the loop
        (dead-letter listeners and metrics expect the loop thread)."""
        system = self.system
        if threading.get_ident() == system.loop_thread:
            system.undeliverable(self, envelope, reason)
            return
        try:
            system.loop.call_soon_threadsafe(system.undeliverable, self, envelope, reason)
        except RuntimeError:  # loop closed: the engine is gone
            pass

    def _stop_from_inside(self, incarnation: int) -> None:
        """``context.stop()``, on the incarnation's loop or thread."""
        if incarnation != self.incarnation:
            return  # an earlier incarnation's context must not stop this one
        runner = self._runner
        if runner is None:
            self._stop_asked = incarnation  # from on_start: honoured once started
        else:
            runner.request_stop()

    def _ended(self, runner: Any, error: BaseException | None) -> None:
        if runner is not self._runner:
            return  # a stop we asked for, or a stale incarnation
        self._runner = None
        if self.state is ActorState.RUNNING:
            self._move(ActorState.RESTARTING)
        listener = self.on_exit
        if listener is not None:
            listener(self, self.incarnation, error)
        else:
            self.system.background(self.terminate(0.0), name=f"terminate:{self.path}")

    async def _stop_runner(self, runner: LoopRunner | ThreadRunner, timeout: float) -> None:
        # A runner not done within ``timeout`` was cut off (and logged it): count it.
        if not await runner.stop(timeout):
            self.system.metrics.killed(self.kind)

    async def stop_incarnation(self, timeout: float) -> None:
        """Stop the running incarnation but keep the cell: messages wait for the next one.
        Past ``timeout`` seconds the incarnation is cut off (see ``terminate``)."""
        runner, self._runner = self._runner, None
        if self.state in (ActorState.RUNNING, ActorState.STARTING):
            self._move(ActorState.RESTARTING)
        if runner is not None:
            await self._stop_runner(runner, timeout)

    async def terminate(self, timeout: float) -> None:
        """Stop for good: waiting messages are reported undeliverable. Idempotent.

        An incarnation still running after ``timeout`` seconds (0: at once) is cut
        off: a loop actor's task is cancelled, a thread actor's thread is abandoned
        to finish by itself; either is counted in ``easel_actor_kills``.
        """
        if self.state in (ActorState.STOPPING, ActorState.STOPPED):
            return
        self._move(ActorState.STOPPING)
        left = self.mailbox.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await self._stop_runner(runner, timeout)
        left += self.mailbox.close()
        for envelope in left:
            self.system.undeliverable(self, envelope, "actor_stopped")
        self._move(ActorState.STOPPED)
        self.system.metrics.retire(self.kind, self.timings)
        self.system.forget(self)


class ActorRef(Generic[M, R]):
    """A stable, typed handle to an actor, valid across restarts.

    ``tell`` is safe from any thread. ``ask`` is for the event loop (it never blocks
    it); ``ask_blocking`` is for other threads.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell[M, R]) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path} {self._cell.state}>"

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def kind(self) -> str:
        return self._cell.kind

    @property
    def state(self) -> ActorState:
        return self._cell.state

    @property
    def pending(self) -> int:
        """Messages waiting in the mailbox (not counting one being handled)."""
        return len(self._cell.mailbox)

    @property
    def alive(self) -> bool:
        return self._cell.state not in (ActorState.STOPPING, ActorState.STOPPED)

    def tell(self, message: M) -> None:
        """Send without waiting. Raises ``ActorStopped`` or ``MailboxFull`` (policy ``reject``)."""
        self._cell.post(Envelope(message))

    async def ask(self, message: M, timeout: float = 5.0) -> R:
        """Send and await the answer, on the loop. Raises what the handler raised
        (an ``EaselError``), ``ActorCrashed``, ``AskTimeout``, ``ActorStopped``,
        ``MailboxFull`` or ``Undeliverable``; ``ValueError`` (nothing sent) unless
        ``timeout`` is a positive, finite number of seconds."""
        future, key = self._send(message, timeout)
        try:
            return await future
        finally:
            self._cell.system.deadlines.discard(future, key)

    def ask_future(self, message: M, timeout: float = 5.0) -> asyncio.Future[R]:
        """Send now and return the future of the answer, on the loop: for callers that
        keep several asks in flight without a task each. Fails like ``ask``; send-time
        errors (``ActorStopped``, ``MailboxFull``, ``ValueError``) are raised here."""
        future, key = self._send(message, timeout)
        if key != _ANSWERED:
            deadlines = self._cell.system.deadlines
            future.add_done_callback(lambda done: deadlines.discard(done, key))
        return future

    def _send(self, message: M, timeout: float) -> tuple[asyncio.Future[R], int]:
        """Queue an ask (or have an idle loop actor answer it at once); returns its
        future and deadline key (``_ANSWERED`` when there is no deadline to keep)."""
        _check_timeout(timeout)
        cell = self._cell
        system = cell.system
        future: asyncio.Future[R] = system.loop.create_future()
        if cell.call_direct(message, future):
            return future, _ANSWERED
        cell.post(Envelope(message, LoopReply(future, system.loop_thread)))
        return future, system.deadlines.add(future, timeout, cell.path)

    def ask_blocking(self, message: M, timeout: float = 5.0) -> R:
        """Send and wait, from a thread that is not the event loop's. Raises as ``ask``."""
        _check_timeout(timeout)
        cell = self._cell
        if threading.get_ident() == cell.system.loop_thread:
            raise RuntimeError("ask_blocking would block the event loop; use `await ask()`")
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        cell.post(Envelope(message, FutureReply(future)))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise AskTimeout(f"{cell.path} did not answer within {timeout}s") from None


_ANSWERED = -1
"""The deadline key of an ask answered directly: there is no deadline to discard."""


def _check_timeout(timeout: float) -> None:
    # checked before sending: a message whose ask cannot wait must not be handled
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"ask timeout must be a positive, finite number, not {timeout!r}")


def undeliverable_error(path: str, reason: str) -> Undeliverable | ActorStopped:
    if reason == "actor_stopped":
        return ActorStopped(f"{path} stopped before handling the message")
    return Undeliverable(f"{path}: message dropped ({reason})")
