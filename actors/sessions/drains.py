"""Drain strategies: what a session does when its client outruns its pipeline.

A drain is the session's frame mailbox. ``latest`` keeps at most one pending frame; a
newer one replaces it and the replaced frame is counted as superseded (reported in the
next RESULT, never answered). ``all`` keeps every frame in order in a bounded FIFO; a
``put`` on a full drain waits, and since the WebSocket reader awaits that ``put``
before reading the next message, TCP pushes back on the client. Nothing is dropped.

Drains live on the loop; every method runs there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.doorbell import Doorbell
from engine.errors import SessionClosed
from engine.types import DrainStrategy

__all__ = ["AllDrain", "Drain", "InboundFrame", "LatestDrain", "make_drain"]


@dataclass(slots=True)
class InboundFrame:
    """A FRAME as the session sees it: validated header fields and a zero-copy payload."""

    seq: int
    content_type: str
    width: int | None
    height: int | None
    payload: bytes | memoryview
    params: dict[str, Any] | None
    received: float
    """``time.perf_counter()`` when the message was read off the socket."""


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Drain:
    """Base of both strategies: one consumer, woken through ``bell``; closeable."""

    def __init__(self, on_superseded: Callable[[], None] | None = None) -> None:
        self.closed = False
        self.peak = 0
        """The most frames this drain ever held at once."""
        self._superseded = 0
        self._on_superseded = on_superseded
        self.bell = Doorbell()
        """Rung when a frame arrives or the drain closes; the consumer may share it
        with its other sources of work."""
        self.admit: Callable[[], None] | None = None
        """Set by the consumer: takes what it has room for, synchronously. ``latest``
        calls it before superseding a frame the consumer has not had the chance to
        take (two frames read in one go)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def take_superseded(self) -> int:
        """Frames replaced since the last call (for a RESULT's ``superseded``)."""
        count, self._superseded = self._superseded, 0
        return count

    async def put(self, frame: InboundFrame) -> None:
        raise NotImplementedError

    def _pop(self) -> InboundFrame | None:
        raise NotImplementedError

    def take(self) -> InboundFrame:
        """The pending frame (the newest under ``latest``); raises ``SessionClosed``
        when none is. The consumer waits on ``bell`` until ``len(drain)`` is non-zero."""
        frame = self._pop()
        if frame is None:
            raise SessionClosed("no frame pending")
        return frame

    def close(self) -> None:
        """Refuse further frames and release whoever waits."""
        self.closed = True
        self.bell.ring()


class LatestDrain(Drain):
    """At most one pending frame; a newer one supersedes it."""

    def __init__(self, on_superseded: Callable[[], None] | None = None) -> None:
        super().__init__(on_superseded)
        self._frame: InboundFrame | None = None

    def __len__(self) -> int:
        return 0 if self._frame is None else 1

    async def put(self, frame: InboundFrame) -> None:
        if self.closed:
            raise SessionClosed("drain closed")
        if self._frame is not None and self.admit is not None:
            self.admit()  # the consumer may have room for it now: don't supersede it yet
        if self._frame is not None:
            self._superseded += 1
            if self._on_superseded is not None:
                self._on_superseded()
        self._frame = frame
        self.peak = 1
        self.bell.ring()

    def _pop(self) -> InboundFrame | None:
        frame, self._frame = self._frame, None
        return frame


class AllDrain(Drain):
    """Every frame, in order, in a FIFO of at most ``capacity``; ``put`` waits when full."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._frames: deque[InboundFrame] = deque()
        self._putter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    async def put(self, frame: InboundFrame) -> None:
        while len(self._frames) >= self.capacity and not self.closed:
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        if self.closed:
            raise SessionClosed("drain closed")
        self._frames.append(frame)
        self.peak = max(self.peak, len(self._frames))
        self.bell.ring()

    def _pop(self) -> InboundFrame | None:
        if not self._frames:
            return None
        frame = self._frames.popleft()
        _wake(self._putter)
        return frame

    def close(self) -> None:
        super().close()
        _wake(self._putter)


def make_drain(
    strategy: DrainStrategy, capacity: int, on_superseded: Callable[[], None] | None = None
) -> Drain:
    """The drain for ``strategy``; ``capacity`` bounds an ``all`` drain."""
    if strategy is DrainStrategy.LATEST:
        return LatestDrain(on_superseded)
    return AllDrain(capacity)
