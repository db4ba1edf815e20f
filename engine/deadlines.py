"""Ask deadlines, kept in coarse buckets: one loop timer per bucket, not one per ask.

A timer per ``ask`` (``loop.call_later`` then ``cancel``) was about a sixth of the
loop's work on a loop→loop round trip. Here an ask costs a dict insert and a dict pop;
a deadline fires up to ``resolution`` seconds late, which no ask timeout notices.
Loop thread only.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from engine.errors import AskTimeout

__all__ = ["Deadlines"]

Key = int


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.01) -> None:
        self.loop = loop
        self.resolution = resolution
        self._buckets: dict[Key, dict[asyncio.Future[Any], tuple[str, float]]] = {}

    def add(self, future: asyncio.Future[Any], timeout: float, path: str) -> Key:
        """Fail ``future`` with ``AskTimeout`` after ``timeout`` unless ``discard``-ed first."""
        key = math.ceil((self.loop.time() + timeout) / self.resolution)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            self.loop.call_at(key * self.resolution, self._expire, key)
        bucket[future] = (path, timeout)
        return key

    def discard(self, future: asyncio.Future[Any], key: Key) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(future, None)

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def _expire(self, key: Key) -> None:
        for future, (path, timeout) in self._buckets.pop(key, {}).items():
            if not future.done():
                future.set_exception(AskTimeout(f"{path} did not answer within {timeout}s"))
