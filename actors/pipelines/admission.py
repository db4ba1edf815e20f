"""Admission to a pipeline: a ``Room`` with a bounded number of places, and ``Ticket``s.

Loop only.
"""

from __future__ import annotations

import contextlib
from collections import deque

from actors.plugins import PipelineConfig
from actors.plugins.catalog import PluginClass
from engine.doorbell import Doorbell

__all__ = ["Place", "Room", "Ticket", "room_for"]


class Ticket:
    """One consumer's place in a ``Room``'s queue; granted entry rings its bell."""

    __slots__ = ("bell", "granted", "queued")

    def __init__(self, bell: Doorbell) -> None:
        self.bell = bell
        self.queued = False
        self.granted = False


class Place:
    """One admitted frame's place in a ``Room``: ``release`` gives it back, once, however
    often it is called (when the model is done with the frame, or when it is answered
    or abandoned, whichever comes first)."""

    __slots__ = ("held", "room")

    def __init__(self, room: Room) -> None:
        self.room = room
        self.held = True

    def release(self, *_: object) -> None:
        if self.held:
            self.held = False
            self.room.release()


class Room:
    """Admission to a pipeline: at most ``capacity`` frames queued or in process.

    Sessions wait here, in FIFO order (fair across sessions), *before* taking a frame
    from their drain, so under ``latest`` the frame that waits is still the one a newer
    frame can supersede, and latency stays bounded when many sessions oversubscribe a
    pipeline. A session's frame loop never blocks here: ``enter`` either admits it or
    queues its ticket, and the ticket's bell rings when a place is handed to it. The
    capacity follows the replicas (it changes on reload). Loop only.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._queue: deque[Ticket] = deque()

    @property
    def queued(self) -> int:
        """Tickets waiting for a place."""
        return len(self._queue)

    def enter(self, ticket: Ticket) -> bool:
        """Take a place now (True), or queue ``ticket`` for the next free one (False)."""
        if ticket.granted:
            ticket.granted = False  # the place was counted when it was handed over
            return True
        if ticket.queued:
            return False
        if self.used < self.capacity and not self._queue:
            self.used += 1
            return True
        ticket.queued = True
        self._queue.append(ticket)
        return False

    def release(self, *_: object) -> None:
        """Give a place back: to the first queued ticket, or to the room. Usable as a
        future's done callback."""
        if self.used <= self.capacity:
            while self._queue:
                ticket = self._queue.popleft()
                if ticket.queued:
                    self._grant(ticket)  # the place passes on, still counted
                    return
        self.used -= 1

    def withdraw(self, ticket: Ticket) -> None:
        """``ticket``'s owner no longer wants in: unqueue it or give back its place."""
        if ticket.granted:
            ticket.granted = False
            self.release()
        elif ticket.queued:
            ticket.queued = False
            with contextlib.suppress(ValueError):
                self._queue.remove(ticket)

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self._queue and self.used < self.capacity:
            ticket = self._queue.popleft()
            if ticket.queued:
                self.used += 1
                self._grant(ticket)

    @staticmethod
    def _grant(ticket: Ticket) -> None:
        ticket.queued = False
        ticket.granted = True
        ticket.bell.ring()


def room_for(config: PipelineConfig, plugin: PluginClass) -> int:
    """Two full micro-batches per replica: one in process, one gathering."""
    return config.replicas * 2 * (config.max_batch or plugin.max_batch)
