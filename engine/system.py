"""The actor system: one per engine. Owns the cells by path and the dead letters."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.actor import LoopActor, ThreadActor
from engine.deadlines import Deadlines
from engine.errors import Conflict, NotFound
from engine.mailbox import Envelope, MailboxSpec
from engine.metrics import ActorMetrics
from engine.ref import ActorRef, Cell, undeliverable_error

__all__ = ["ActorSystem", "DeadLetter"]

log = logging.getLogger(__name__)

M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    path: str
    kind: str
    message: Any
    reason: str


class ActorSystem:
    """Registry of live actors by path (O(1) lookup) plus undeliverable-message accounting.

    Create it on the loop that will run its loop actors.
    """

    def __init__(self, metrics: ActorMetrics, dead_letter_capacity: int = 1000) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.deadlines = Deadlines(self.loop)
        self.metrics = metrics
        self._cells: dict[str, Cell[Any, Any]] = {}
        self.dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_capacity)
        self.dead_letter_listeners: list[Callable[[DeadLetter], None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        metrics.bind(self)

    def cells(self) -> Iterator[Cell[Any, Any]]:
        return iter(list(self._cells.values()))

    def create(
        self,
        path: str,
        factory: Callable[[], LoopActor[M, R] | ThreadActor[M, R]],
        *,
        mailbox: MailboxSpec | None = None,
        kind: str | None = None,
    ) -> Cell[M, R]:
        """Make a cell at ``path`` (not started yet). Raises ``Conflict`` if taken."""
        if path in self._cells:
            raise Conflict(f"an actor already lives at {path}")
        if kind is None:
            kind = getattr(factory, "kind", None) or "actor"
        cell: Cell[M, R] = Cell(self, path, factory, mailbox or MailboxSpec(), kind)
        self._cells[path] = cell
        return cell

    async def spawn(
        self,
        path: str,
        factory: Callable[[], LoopActor[M, R] | ThreadActor[M, R]],
        *,
        mailbox: MailboxSpec | None = None,
    ) -> ActorRef[M, R]:
        """Create and start an unsupervised actor: when it exits it is terminated."""
        cell = self.create(path, factory, mailbox=mailbox)
        try:
            await cell.start()
        except BaseException:
            await cell.terminate(0.0)
            raise
        return cell.ref

    def lookup(self, path: str) -> ActorRef[Any, Any]:
        """The reference at ``path``; raises ``NotFound``."""
        cell = self._cells.get(path)
        if cell is None:
            raise NotFound(f"no actor at {path}")
        return cell.ref

    def forget(self, cell: Cell[Any, Any]) -> None:
        if self._cells.get(cell.path) is cell:
            del self._cells[cell.path]

    def undeliverable(self, cell: Cell[Any, Any], envelope: Envelope, reason: str) -> None:
        """Report a message that will never be handled: fail its ask, record it."""
        if envelope.reply is not None:
            envelope.reply.fail(undeliverable_error(cell.path, reason))
        letter = DeadLetter(cell.path, cell.kind, envelope.message, reason)
        self.dead_letters.append(letter)
        self.metrics.dead_letter(cell.kind, reason)
        for listener in self.dead_letter_listeners:
            listener(letter)

    def background(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``work`` in a task the system holds until it ends (the loop alone would
        not keep it from being garbage-collected) and ``shutdown`` waits for. Its
        failure is logged. Loop thread only."""
        task = self.loop.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=error)

    async def shutdown(self, timeout: float) -> None:
        """Terminate every cell still registered (unsupervised ones included), then
        wait for background work, all within ``timeout`` seconds; work still running
        then is cancelled."""
        deadline = time.monotonic() + timeout
        for cell in reversed(list(self._cells.values())):
            await cell.terminate(max(0.0, deadline - time.monotonic()))
        # background work may start more of it: wait until none is left
        while running := [task for task in self._background if not task.done()]:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("cancelling %d background task(s) at shutdown", len(running))
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                return
            await asyncio.wait(running, timeout=left)
