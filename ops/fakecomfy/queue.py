"""The prompt queue and the history, held in memory as a real server holds them.

Pending prompts form a priority heap ordered by ``(number, prompt_id)``: the lowest
number runs first. One prompt runs at a time. A finished prompt (success, error or
interrupt) goes to the history, which keeps the newest ``max_history`` entries.
Every change of the queue calls ``on_change`` (the hub broadcasts a ``status``).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SENSITIVE_KEYS", "PromptQueue", "QueueItem"]

SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


@dataclass
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    sensitive: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> list[Any]:
        """``[number, prompt_id, graph, extra_data, outputs_to_execute]``."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    def __init__(self, on_change: Callable[[], None], max_history: int = 10000) -> None:
        self._heap: list[tuple[float, str, int, QueueItem]] = []
        self._seq = itertools.count()
        self._tasks = itertools.count()
        self._ready = asyncio.Event()
        self._on_change = on_change
        self.max_history = max_history
        self.running: dict[int, QueueItem] = {}
        self.started: dict[str, int] = {}
        """Prompt id → execution start time (ms) of the running prompt."""
        self.history: dict[str, dict[str, Any]] = {}

    # -- queue ------------------------------------------------------------------------

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item.number, item.prompt_id, next(self._seq), item))
        self._ready.set()
        self._on_change()

    async def get(self) -> tuple[QueueItem, int]:
        """Wait for the next prompt and mark it running."""
        while not self._heap:
            self._ready.clear()
            await self._ready.wait()
        item = heapq.heappop(self._heap)[3]
        task = next(self._tasks)
        self.running[task] = item
        self._on_change()
        return item, task

    def task_done(self, task: int, result: dict[str, Any], status: dict[str, Any]) -> None:
        """Move a finished prompt into the history."""
        item = self.running.pop(task)
        self.started.pop(item.prompt_id, None)
        while len(self.history) >= self.max_history and item.prompt_id not in self.history:
            self.history.pop(next(iter(self.history)))
        self.history[item.prompt_id] = {
            "prompt": item.wire(),
            "outputs": {},
            "status": status,
            **result,
        }
        self._on_change()

    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.remaining()}}

    def pending(self) -> list[QueueItem]:
        """Pending prompts in the order they will run."""
        return [entry[3] for entry in sorted(self._heap, key=lambda e: e[:3])]

    def current(self) -> tuple[list[Any], list[Any]]:
        """``(queue_running, queue_pending)`` as ``GET /queue`` shows them."""
        running = [copy.deepcopy(item.wire()) for item in self.running.values()]
        return running, [copy.deepcopy(item.wire()) for item in self.pending()]

    def wipe(self) -> None:
        self._heap = []
        self._on_change()

    def delete(self, prompt_id: Any) -> bool:
        """Remove a pending prompt; the running one is not touched."""
        for index, entry in enumerate(self._heap):
            if entry[1] == prompt_id:
                self._heap.pop(index)
                heapq.heapify(self._heap)
                self._on_change()
                return True
        return False

    def running_ids(self) -> list[str]:
        return [item.prompt_id for item in self.running.values()]

    # -- history -------------------------------------------------------------------------

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {} if entry is None else {prompt_id: copy.deepcopy(entry)}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def delete_history(self, prompt_id: Any) -> None:
        if isinstance(prompt_id, str):
            self.history.pop(prompt_id, None)

    def wipe_history(self) -> None:
        self.history = {}
