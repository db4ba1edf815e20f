"""A set of background tasks that stops as one: what the job tracker runs.

Tasks started through :meth:`TaskSet.spawn` are kept until they end (a failure is
logged, never lost); :meth:`TaskSet.stop` lets those under way finish within a grace,
cancels the rest, and refuses new ones until :meth:`TaskSet.start`. Loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskSet"]

log = logging.getLogger(__name__)


class TaskSet:
    """Background tasks of one owner, stopped together."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    def start(self) -> None:
        """Accept work again (after :meth:`stop`)."""
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` as a task of this set; once stopped, nothing more starts."""
        if self._stopped:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s failed", self._what, exc_info=error)

    async def stop(self, grace: float) -> None:
        """Let the tasks under way finish (within ``grace`` seconds), then cancel."""
        self._stopped = True
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
