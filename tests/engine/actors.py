"""Small actors for runtime tests: they record what happens to them in a shared journal."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.actor import LoopActor, ThreadActor
from engine.errors import Invalid


@dataclass
class Journal:
    events: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event: str, who: str, data: Any = None) -> None:
        with self.lock:
            self.events.append((event, who, data))

    def of(self, event: str, who: str | None = None) -> list[Any]:
        with self.lock:
            return [d for e, w, d in self.events if e == event and (who is None or w == who)]

    def order(self, event: str) -> list[str]:
        with self.lock:
            return [w for e, w, _ in self.events if e == event]


CRASH = "crash"
BAD = "bad"
STOP = "stop"
CANCELLED = "cancelled"


def loop_actor(
    name: str, journal: Journal, *, fail_starts: frozenset[int] = frozenset()
) -> Callable[[], Any]:
    """A loop actor that echoes messages; ``CRASH`` crashes it, ``BAD`` is an ``Invalid``
    error, ``STOP`` exits normally, ``CANCELLED`` awaits a task that was cancelled (not
    the actor's own); its n-th start fails when n is in ``fail_starts``."""
    starts = {"n": 0}

    class Recorder(LoopActor[Any, Any]):
        kind = "recorder"

        async def on_start(self) -> None:
            starts["n"] += 1
            if starts["n"] in fail_starts:
                raise RuntimeError(f"{name} refuses to start")
            journal.add("start", name, self.context.incarnation)

        async def receive(self, message: Any) -> Any:
            journal.add("msg", name, message)
            if message == CRASH:
                raise RuntimeError(f"{name} crashed on purpose")
            if message == BAD:
                raise Invalid("bad message")
            if message == STOP:
                self.context.stop()
                return None
            if message == CANCELLED:
                helper = asyncio.ensure_future(asyncio.sleep(30))
                helper.cancel()
                await helper
            if isinstance(message, tuple) and message[0] == "sleep":
                await asyncio.sleep(message[1])
            return message

        async def on_stop(self) -> None:
            journal.add("stop", name)

        async def on_failure(self, error: BaseException) -> None:
            journal.add("failure", name, str(error))

    return Recorder


def thread_actor(name: str, journal: Journal) -> Callable[[], Any]:
    """The thread-actor twin of ``loop_actor``."""

    class ThreadRecorder(ThreadActor[Any, Any]):
        kind = "thread_recorder"

        def on_start(self) -> None:
            journal.add("start", name, self.context.incarnation)

        def receive(self, message: Any) -> Any:
            journal.add("msg", name, message)
            if message == CRASH:
                raise RuntimeError(f"{name} crashed on purpose")
            if message == BAD:
                raise Invalid("bad message")
            if message == STOP:
                self.context.stop()
                return None
            if isinstance(message, tuple) and message[0] == "sleep":
                time.sleep(message[1])
            return message

        def on_stop(self) -> None:
            journal.add("stop", name)

        def on_failure(self, error: BaseException) -> None:
            journal.add("failure", name, str(error))

    return ThreadRecorder


def stuck_on_stop(
    runtime: str, name: str, journal: Journal, release: threading.Event
) -> Callable[[], Any]:
    """An actor (``runtime`` ``loop`` or ``thread``) whose ``on_stop`` never returns by
    itself: the loop one awaits forever, the thread one blocks until ``release`` is set."""

    class StuckLoop(LoopActor[Any, Any]):
        kind = "stuck"

        async def on_start(self) -> None:
            journal.add("start", name, self.context.incarnation)

        async def receive(self, message: Any) -> Any:
            return message

        async def on_stop(self) -> None:
            journal.add("stopping", name)
            await asyncio.Event().wait()

    class StuckThread(ThreadActor[Any, Any]):
        kind = "stuck"

        def on_start(self) -> None:
            journal.add("start", name, self.context.incarnation)

        def receive(self, message: Any) -> Any:
            return message

        def on_stop(self) -> None:
            journal.add("stopping", name)
            release.wait()

    return StuckLoop if runtime == "loop" else StuckThread
