"""Event-loop lag: how late a periodic tick runs. A blocked loop shows up here first."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Histogram

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    """Ticks every ``interval`` seconds on the loop and records how late each tick was."""

    def __init__(self, histogram: Histogram, interval: float) -> None:
        self.histogram = histogram
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the ticks go on (started, not stopped, not failed)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - expected)
            self.worst = max(self.worst, lag)
            self.histogram.observe(lag)
