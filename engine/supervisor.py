"""OTP-style supervision, which pykka does not have.

A ``Supervisor`` starts its children in order, watches them, and restarts them by its
strategy when they exit:

* ``one_for_one``  — restart only the child that exited;
* ``one_for_all``  — stop every other child (reverse start order), restart them all;
* ``rest_for_one`` — stop the children started after it, restart it and them.

Each child is ``permanent`` (always restarted), ``transient`` (restarted only after a
failure) or ``temporary`` (never restarted). More than ``max_restarts`` restarts
within ``period`` seconds and the supervisor gives up: it stops its children and fails
to its parent (escalation); the root's failure is reported to the engine. Restarts
wait an exponentially growing, jittered delay that resets after a quiet period.

Restarting keeps each child's cell, so references stay valid and messages sent in the
meantime are delivered to the next incarnation. Everything here runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.actor import LoopActor, ThreadActor
from engine.errors import ActorError, Conflict, NotFound, Unavailable
from engine.mailbox import MailboxSpec
from engine.ref import ActorRef, ActorState, Cell, ExitCallback
from engine.system import ActorSystem

__all__ = [
    "ActorSpec",
    "Backoff",
    "ChildSpec",
    "Restart",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
]

log = logging.getLogger(__name__)


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class RestartIntensityExceeded(ActorError):
    code = "restart_intensity"
    title = "Too many restarts"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delay: ``initial * factor**attempt`` capped at ``maximum``, ± ``jitter``."""

    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after: float = 30.0
    """Seconds without a failure after which the attempt count starts again at 0."""

    def bounds(self, attempt: int) -> tuple[float, float]:
        base = min(self.maximum, self.initial * self.factor**attempt)
        return base * (1 - self.jitter), base * (1 + self.jitter)

    def delay(self, attempt: int, rng: random.Random) -> float:
        low, high = self.bounds(attempt)
        return rng.uniform(low, high)


@dataclass(frozen=True, slots=True)
class ActorSpec:
    id: str
    factory: Callable[[], LoopActor[Any, Any] | ThreadActor[Any, Any]]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    mailbox: MailboxSpec = field(default_factory=MailboxSpec)
    kind: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    id: str
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    period: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 30.0
    children: tuple[ActorSpec | SupervisorSpec, ...] = ()


ChildSpec = ActorSpec | SupervisorSpec


class _Child:
    """One supervised child: an actor cell or a nested supervisor."""

    __slots__ = ("attempts", "last_failure", "node", "spec")

    def __init__(self, spec: ChildSpec, node: Cell[Any, Any] | Supervisor) -> None:
        self.spec = spec
        self.node = node
        self.attempts = 0
        self.last_failure = 0.0

    @property
    def incarnation(self) -> int:
        return self.node.incarnation

    @property
    def kind(self) -> str:
        return self.node.kind

    @property
    def running(self) -> bool:
        node = self.node
        if isinstance(node, Supervisor):
            return node.running
        return node.state is ActorState.RUNNING

    async def start(self) -> None:
        await self.node.start()

    async def stop_incarnation(self, deadline: float | None = None) -> None:
        await self.node.stop_incarnation(self._timeout(deadline))

    async def terminate(self, deadline: float | None = None) -> None:
        await self.node.terminate(self._timeout(deadline))

    def _timeout(self, deadline: float | None) -> float:
        """The child's own shutdown timeout, cut to what is left before ``deadline``
        (its parent's, a ``time.monotonic()`` instant): past it, 0 (cut off at once)."""
        timeout = self.spec.shutdown_timeout
        if deadline is None:
            return timeout
        return max(0.0, min(timeout, deadline - time.monotonic()))


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class Supervisor:
    """Supervises an ordered list of children. Every method runs on the loop."""

    kind = "supervisor"

    def __init__(
        self,
        system: ActorSystem,
        spec: SupervisorSpec,
        path: str,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.system = system
        self.spec = spec
        self.path = path
        self.rng = rng or random.Random()
        self.incarnation = 0
        self.on_exit: ExitCallback | None = None
        self.failure: BaseException | None = None
        self._children: list[_Child] = []
        self._restarts: deque[float] = deque()
        # Children stopped by a handled exit, each mapped to the restart that will start
        # it: an exit of a pending child (one_for_all, rest_for_one: two crashes in one
        # tick) is already dealt with, and a later exit that takes a child over restarts
        # it in start order with its own children.
        self._pending: dict[_Child, object] = {}
        self._lock = asyncio.Lock()
        self._running = False
        self._terminated = False
        self._tasks: set[asyncio.Task[None]] = set()
        for child_spec in spec.children:
            self._adopt(child_spec)

    # --- introspection -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def children(self) -> list[tuple[str, Cell[Any, Any] | Supervisor]]:
        """(id, node) of every child in start order."""
        return [(child.spec.id, child.node) for child in self._children]

    def child(self, child_id: str) -> Cell[Any, Any] | Supervisor:
        for child in self._children:
            if child.spec.id == child_id:
                return child.node
        raise NotFound(f"{self.path} has no child {child_id!r}")

    # --- building ------------------------------------------------------------------

    def _adopt(self, spec: ChildSpec) -> _Child:
        if any(child.spec.id == spec.id for child in self._children):
            raise Conflict(f"{self.path} already has a child {spec.id!r}")
        node: Cell[Any, Any] | Supervisor
        if isinstance(spec, SupervisorSpec):
            node = Supervisor(self.system, spec, f"{self.path}/{spec.id}", rng=self.rng)
        else:
            path = spec.path or f"{self.path}/{spec.id}"
            node = self.system.create(path, spec.factory, mailbox=spec.mailbox, kind=spec.kind)
        child = _Child(spec, node)
        node.on_exit = lambda _node, incarnation, error: self._exited(child, incarnation, error)
        self._children.append(child)
        return child

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start (or restart) every child in order, leaving those already running alone;
        on a failure stop them all again."""
        async with self._lock:
            self.incarnation += 1
            self.failure = None
            self._restarts.clear()
            self._pending.clear()
            self._running = True
            started: list[_Child] = []
            try:
                for child in list(self._children):
                    if not child.running:
                        await child.start()
                    started.append(child)
            except BaseException:
                self._running = False
                for child in reversed(started):
                    await child.stop_incarnation()
                raise

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any, Any] | Supervisor:
        """Add and start a child; returns its reference (or the nested supervisor).

        Raises ``Conflict`` for a taken id, ``NotFound`` once terminated, ``Unavailable``
        while not running (it gave up and waits for its parent), and what the child's
        start raises.
        """
        async with self._lock:
            if self._terminated:
                raise NotFound(f"{self.path} is stopped")
            if not self._running:
                # its restart (by the parent) would find the new child running
                raise Unavailable(f"{self.path} is not running")
            child = self._adopt(spec)
            try:
                await child.start()
            except BaseException:
                self._children.remove(child)
                await child.terminate()
                raise
            node = child.node
            return node if isinstance(node, Supervisor) else node.ref

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child for good and forget it. Raises ``NotFound``."""
        async with self._lock:
            for child in self._children:
                if child.spec.id == child_id:
                    self._children.remove(child)
                    await child.terminate()
                    return
        raise NotFound(f"{self.path} has no child {child_id!r}")

    async def stop_incarnation(self, timeout: float | None = None) -> None:
        """Stop every child (reverse start order) but keep them for a later ``start``;
        temporary children are terminated and forgotten. Within ``timeout`` seconds
        for the whole subtree, as ``terminate``."""
        deadline = _deadline(timeout)
        async with self._lock:
            self._running = False
            await self._stop_children_for_restart(deadline)

    async def terminate(self, timeout: float | None = None) -> None:
        """Stop every child for good, in reverse start order, each within its own
        shutdown timeout and all within ``timeout`` seconds (``None``: no bound but
        theirs). A child still running when its time is up is cut off (a loop actor
        cancelled, a thread actor's thread abandoned), logged and counted in
        ``easel_actor_kills``; past the bound, the children left get no time at all."""
        deadline = _deadline(timeout)
        self._terminated = True
        self._running = False
        async with self._lock:
            for child in reversed(self._children):
                await child.terminate(deadline)
            self._children.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- reacting to exits -------------------------------------------------------------

    def _exited(self, child: _Child, incarnation: int, error: BaseException | None) -> None:
        task = self.system.loop.create_task(self._handle_exit(child, incarnation, error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_exit(
        self, child: _Child, incarnation: int, error: BaseException | None
    ) -> None:
        async with self._lock:
            if not self._running or child not in self._children or child in self._pending:
                return
            if child.incarnation != incarnation:
                return  # an older incarnation; already dealt with
            restart = child.spec.restart
            if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
                self._children.remove(child)
                await child.terminate()
                return
            if self._intensity_exceeded():
                await self._give_up(child, error)
                return
            affected = self._affected(child)
            for other in reversed(affected):
                if other is not child:
                    await self._stop_for_restart(other)
            affected = [c for c in affected if c in self._children]
            token = object()
            self._pending.update(dict.fromkeys(affected, token))
            delay = self._next_delay(child)
            generation = self.incarnation
        if delay > 0:
            await asyncio.sleep(delay)
        await self._restart(affected, generation, token)

    def _intensity_exceeded(self) -> bool:
        now = time.monotonic()
        window = self._restarts
        window.append(now)
        while window and now - window[0] > self.spec.period:
            window.popleft()
        return len(window) > self.spec.max_restarts

    def _affected(self, child: _Child) -> list[_Child]:
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self._children)
        return self._children[self._children.index(child) :]

    async def _stop_children_for_restart(self, deadline: float | None = None) -> None:
        """Stop every child in reverse start order, temporary ones for good: a later
        ``start`` (the parent restarting this supervisor) must not bring them back."""
        for child in reversed(list(self._children)):
            await self._stop_for_restart(child, deadline)

    async def _stop_for_restart(self, child: _Child, deadline: float | None = None) -> None:
        if child.spec.restart is Restart.TEMPORARY:
            self._children.remove(child)
            await child.terminate(deadline)
        else:
            await child.stop_incarnation(deadline)

    def _next_delay(self, child: _Child) -> float:
        now = time.monotonic()
        if now - child.last_failure > self.spec.backoff.reset_after:
            child.attempts = 0
        delay = self.spec.backoff.delay(child.attempts, self.rng)
        child.attempts += 1
        child.last_failure = now
        return delay

    async def _restart(self, children: list[_Child], generation: int, token: object) -> None:
        async with self._lock:
            if not self._running or self.incarnation != generation:
                return
            for child in children:
                if self._pending.get(child) is not token:
                    continue  # taken over by a later exit, which restarts it
                del self._pending[child]
                if child not in self._children:
                    continue
                self.system.metrics.restarted(child.kind)
                try:
                    await child.start()
                except Exception as error:
                    log.error("%s: restart of %s failed", self.path, child.spec.id, exc_info=error)
                    self._exited(child, child.incarnation, error)

    async def _give_up(self, child: _Child, error: BaseException | None) -> None:
        reason = RestartIntensityExceeded(
            f"{self.path}: more than {self.spec.max_restarts} restarts in "
            f"{self.spec.period}s (last: {child.spec.id}: {error!r})"
        )
        reason.__cause__ = error
        self.failure = reason
        self._running = False
        log.error("%s gives up: %s", self.path, reason)
        await self._stop_children_for_restart()
        handler = self.on_exit
        if handler is not None:
            handler(self, self.incarnation, reason)
