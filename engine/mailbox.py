"""Bounded mailboxes, message envelopes and the replies that carry answers back.

A mailbox belongs to an actor's *cell*, not to one incarnation: while the actor
restarts, the mailbox keeps what is sent (up to its capacity) and hands it to the next
incarnation. That is the stash the supervisor promises.

Every method here is safe from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from engine.errors import ActorStopped, MailboxFull

__all__ = [
    "Envelope",
    "FutureReply",
    "LoopReply",
    "Mailbox",
    "MailboxSpec",
    "Overflow",
    "Reply",
]


class Overflow(StrEnum):
    """What a full mailbox does with one more message."""

    REJECT = "reject"
    """Refuse it: ``tell``/``ask`` raise ``MailboxFull`` to the sender."""
    DROP_OLDEST = "drop_oldest"
    """Accept it and evict the oldest waiting message, which is reported undeliverable."""
    DROP_NEWEST = "drop_newest"
    """Discard the new message and report it undeliverable."""


@dataclass(frozen=True, slots=True)
class MailboxSpec:
    capacity: int = 1024
    overflow: Overflow = Overflow.REJECT

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("mailbox capacity must be at least 1")


class Reply(Protocol):
    """Where the answer to one message goes. Resolved at most once, from any thread."""

    def resolve(self, value: Any) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class LoopReply:
    """Completes an ``asyncio.Future`` on its own loop, whichever thread answers."""

    __slots__ = ("future", "loop", "loop_thread")

    def __init__(self, future: asyncio.Future[Any], loop_thread: int) -> None:
        self.future = future
        self.loop = future.get_loop()
        self.loop_thread = loop_thread

    def resolve(self, value: Any) -> None:
        if threading.get_ident() == self.loop_thread:
            self._set_result(value)
        else:
            self._call_soon(self._set_result, value)

    def fail(self, error: BaseException) -> None:
        if threading.get_ident() == self.loop_thread:
            self._set_exception(error)
        else:
            self._call_soon(self._set_exception, error)

    def _call_soon(self, fn: Any, arg: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _set_result(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def _set_exception(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class FutureReply:
    """Completes a ``concurrent.futures.Future`` (for blocking asks from threads)."""

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(slots=True)
class Envelope:
    message: Any
    reply: Reply | None = None


class Mailbox:
    """A bounded FIFO with an overflow policy and a "scheduled" flag for wake-ups.

    ``put`` says whether the consumer must be woken: only the put that finds the
    mailbox idle does so, and ``take`` clears the flag when it finds nothing, so a
    consumer is never woken twice for the same work nor left asleep with work queued.
    """

    __slots__ = ("_closed", "_items", "_lock", "_scheduled", "spec")

    def __init__(self, spec: MailboxSpec) -> None:
        self.spec = spec
        self._items: deque[Envelope] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, envelope: Envelope) -> tuple[bool, Envelope | None]:
        """Queue ``envelope``; return (wake the consumer?, envelope evicted or dropped).

        Raises ``ActorStopped`` once closed, ``MailboxFull`` when full under ``REJECT``.
        """
        with self._lock:
            if self._closed:
                raise ActorStopped()
            evicted: Envelope | None = None
            if len(self._items) >= self.spec.capacity:
                if self.spec.overflow is Overflow.REJECT:
                    raise MailboxFull(f"mailbox full ({self.spec.capacity} messages)")
                if self.spec.overflow is Overflow.DROP_NEWEST:
                    return False, envelope
                evicted = self._items.popleft()
            self._items.append(envelope)
            if self._scheduled:
                return False, evicted
            self._scheduled = True
            return True, evicted

    def take(self, limit: int) -> list[Envelope]:
        """Pop up to ``limit`` envelopes; an empty list clears the scheduled flag."""
        with self._lock:
            items = self._items
            if not items:
                self._scheduled = False
                return []
            if limit == 1 or len(items) == 1:
                return [items.popleft()]
            return [items.popleft() for _ in range(min(limit, len(items)))]

    def take_one(self) -> Envelope | None:
        """Pop one envelope; ``None`` (and the scheduled flag cleared) when empty."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            self._scheduled = False
            return None

    def reschedule(self) -> bool:
        """For a new consumer: mark scheduled iff work is waiting; True means wake it."""
        with self._lock:
            self._scheduled = bool(self._items)
            return self._scheduled

    def close(self) -> list[Envelope]:
        """Refuse all further puts and return what was still waiting."""
        with self._lock:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            return left
