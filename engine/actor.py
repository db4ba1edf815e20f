"""Actor behaviours: what a user subclasses.

Two kinds share one reference type (``ActorRef``):

* ``LoopActor`` runs on the asyncio event loop, one task per incarnation. Its hooks are
  coroutines and run on the loop. Use it for I/O (sessions, connections, clients).
* ``ThreadActor`` runs in its own thread (hosted by ``pykka.ThreadingActor``). Its hooks
  are plain methods and run on that thread, never on the loop. Use it for blocking
  work (model inference, heavy codecs). It may take messages in micro-batches.

Failure rules, for both kinds: an ``EaselError`` raised by ``receive`` is an error
about that one message; it is answered to the sender and the actor lives on. Any other
exception crashes the incarnation: the sender gets ``ActorCrashed``, ``on_failure``
runs, and the supervisor decides what happens next. An exception in ``on_start``
crashes the incarnation the same way (``on_failure`` is not called: nothing started).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from engine.errors import EaselError

if TYPE_CHECKING:
    from engine.ref import ActorRef

__all__ = ["ActorContext", "LoopActor", "ThreadActor"]

M = TypeVar("M")
R = TypeVar("R")


class ActorContext(Generic[M, R]):
    """What an incarnation knows about itself. Set before ``on_start`` runs."""

    __slots__ = ("_stop", "incarnation", "ref")

    def __init__(self, ref: ActorRef[M, R], incarnation: int, stop: Any) -> None:
        self.ref = ref
        self.incarnation = incarnation
        self._stop = stop

    @property
    def path(self) -> str:
        return self.ref.path

    def stop(self) -> None:
        """Exit normally after the current message, or right after the start when called
        in ``on_start`` (a ``transient`` child is not restarted)."""
        self._stop()


class _Behaviour(Generic[M, R]):
    kind: ClassVar[str] = "actor"
    """Metric label for every actor of this class (e.g. ``session``); never an id."""
    context: ActorContext[M, R]

    def log_fields(self) -> dict[str, str]:
        """What this actor's log lines are about (``session_id``: engine/logcontext.py),
        read when an incarnation starts. A loop actor's task has these bound and no
        others: it does not speak for the request that started it."""
        return {}


class LoopActor(_Behaviour[M, R]):
    """An actor on the event loop. Every hook runs on the loop, in the actor's task."""

    async def on_start(self) -> None:
        """Runs before the first message. Raising fails the start."""

    async def receive(self, message: M) -> R:
        """Handle one message; the return value answers an ``ask``.

        A ``CancelledError`` from something it awaits crashes the actor like any other
        exception; only a stop that cancels the actor itself ends it quietly (an ``ask``
        in flight then fails with ``ActorStopped``).
        """
        raise NotImplementedError

    def receive_now(self, message: M) -> R:
        """Optional: handle one message without ever suspending.

        An actor that overrides it may be called *directly*: an ``ask`` made on the
        loop while this actor is idle (nothing in its mailbox, no message in hand) runs
        ``receive_now`` in the asker's task instead of queueing the message and
        switching tasks twice. It is still one message at a time, and the failure rules
        are the same: an ``EaselError`` answers that ask, anything else crashes the
        incarnation. ``receive`` must handle the same messages the same way (it is used
        whenever the actor is busy or the sender is not on the loop).
        """
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Runs after a requested or normal stop; exceptions are logged and ignored."""

    async def on_failure(self, error: BaseException) -> None:
        """Runs after a crash, instead of ``on_stop``; exceptions are logged and ignored."""


class ThreadActor(_Behaviour[M, R]):
    """An actor on its own thread. Every hook runs on that thread, never on the loop."""

    max_batch: int = 1
    """Largest micro-batch handed to ``receive_batch``; read before each batch, so an
    incarnation may set it in ``on_start``. Only used when ``receive_batch`` is
    overridden; otherwise messages go to ``receive`` one at a time."""
    max_wait: float = 0.0
    """Seconds a batch that is not full may wait for more messages before
    ``receive_batch``. The default takes what is waiting when the actor is free: the
    batch size follows the load and no message waits on a timer."""

    def on_start(self) -> None:
        """Runs on the actor's thread before the first message. Raising fails the start."""

    def receive(self, message: M) -> R:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError

    def receive_batch(self, messages: Sequence[M]) -> Sequence[R | EaselError]:
        """Handle up to ``max_batch`` messages at once; one answer per message, in order.

        An ``EaselError`` item fails only that message; raising anything else crashes
        the actor and fails the whole batch (its asks get ``ActorCrashed``, its tells
        become dead letters with reason ``batch_crashed``). The default calls
        ``receive`` for each.
        """
        answers: list[R | EaselError] = []
        for message in messages:
            try:
                answers.append(self.receive(message))
            except EaselError as error:
                answers.append(error)
        return answers

    def on_stop(self) -> None:
        """Runs on the actor's thread after a requested or normal stop."""

    def on_failure(self, error: BaseException) -> None:
        """Runs on the actor's thread after a crash, instead of ``on_stop``."""
