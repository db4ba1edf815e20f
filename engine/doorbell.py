"""A doorbell: how one task on the loop sleeps until something may have changed.

Several sources (a mailbox, a drain, finished futures, a pipeline's admission queue)
ring the same bell; its one owner wakes, looks at all of them, and sleeps again. A ring
while the owner is busy is remembered, so nothing is missed between a look and a sleep.
Cheaper than ``asyncio.Event`` on the hot path: no waiter deque and no running-loop
lookup per ring, and a ring while the owner is awake costs one attribute store.

Loop thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Doorbell"]


class Doorbell:
    """A wake-up signal for exactly one waiting task."""

    __slots__ = ("_loop", "_rung", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def sleeping(self) -> bool:
        """Whether the owner is waiting and nobody has rung since."""
        return self._waiter is not None and not self._rung

    def ring(self, *_: Any) -> None:
        """Wake the owner (or let its next ``wait`` return at once). Usable as a
        future's done callback."""
        self._rung = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return once the bell has rung since the last ``wait`` returned."""
        if not self._rung:
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        self._rung = False
