"""The ``Engine``: owns the actor system, the root supervisor and the metrics registry.

No module-level state: a process may run as many engines as it likes (tests do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from engine.looplag import LoopLagMonitor
from engine.metrics import ActorMetrics, new_registry
from engine.settings import Settings
from engine.supervisor import ChildSpec, Supervisor, SupervisorSpec
from engine.system import ActorSystem

__all__ = ["ComponentCheck", "Engine", "Health", "Readiness", "ReadinessCheck"]

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when the dependency is ready; raises (any exception) when it is not."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    alive: bool
    detail: str


ComponentCheck = Callable[[], Mapping[str, Health]]
"""The health of each of a group of components (pipelines by name). Loop only; must
not block."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``Engine.ready`` found. ``essentials`` (supervision, the event loop, the
    store …) decide whether the instance can serve at all; ``components`` are groups of
    parts (each pipeline) that fail alone: one down leaves the instance ``degraded``,
    still ready for everything else."""

    essentials: dict[str, Health]
    components: dict[str, dict[str, Health]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check.alive for check in self.essentials.values())

    @property
    def degraded(self) -> bool:
        return any(
            not health.alive for group in self.components.values() for health in group.values()
        )

    @property
    def status(self) -> str:
        """``unavailable`` (an essential fails), ``degraded`` or ``ok``."""
        if not self.ready:
            return "unavailable"
        return "degraded" if self.degraded else "ok"


class Engine:
    """Build with settings and the root's children; ``start``/``stop`` on the loop."""

    def __init__(self, settings: Settings, children: Sequence[ChildSpec] = ()) -> None:
        self.settings = settings
        self.registry: CollectorRegistry = new_registry()
        self.metrics = ActorMetrics(self.registry)
        self.root_spec = SupervisorSpec(id="root", children=tuple(children))
        self._system: ActorSystem | None = None
        self._root: Supervisor | None = None
        self._lag: LoopLagMonitor | None = None
        self.root_failure: BaseException | None = None
        self._readiness: dict[str, ReadinessCheck] = {}
        self._components: dict[str, ComponentCheck] = {}

    @property
    def system(self) -> ActorSystem:
        if self._system is None:
            raise RuntimeError("the engine is not started")
        return self._system

    @property
    def root(self) -> Supervisor:
        if self._root is None:
            raise RuntimeError("the engine is not started")
        return self._root

    @property
    def lag(self) -> LoopLagMonitor:
        if self._lag is None:
            raise RuntimeError("the engine is not started")
        return self._lag

    async def start(self) -> None:
        """Start the actor system and the supervision tree (children in order)."""
        self._system = ActorSystem(self.metrics)
        self._lag = LoopLagMonitor(self.metrics.loop_lag, self.settings.loop_lag_interval)
        self._lag.start()
        self._root = Supervisor(self._system, self.root_spec, "")
        self._root.on_exit = self._root_failed
        await self._root.start()

    def _root_failed(self, _root: object, _incarnation: int, error: BaseException | None) -> None:
        self.root_failure = error or RuntimeError("root supervisor exited")
        log.critical("ENGINE UNHEALTHY: the root supervisor failed: %s", self.root_failure)

    def health(self) -> Health:
        if self._root is None:
            return Health(False, "not started")
        if self.root_failure is not None:
            return Health(False, f"root supervisor failed: {self.root_failure}")
        return Health(True, "ok")

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Register an essential dependency: without it the instance is not ready."""
        self._readiness[name] = check

    def add_component_check(self, group: str, check: ComponentCheck) -> None:
        """Register a group of components (``pipelines``) that ``ready()`` reports one
        by one; a failing one degrades the instance without making it unready."""
        self._components[group] = check

    def _event_loop(self) -> Health:
        if self._lag is None or not self._lag.running:
            return Health(False, "the event loop's lag monitor is not running")
        return Health(True, "ok")

    async def ready(self, timeout: float = 2.0) -> Readiness:
        """Check the root supervisor, the event loop, every readiness check (each
        within ``timeout``) and every component group. Loop only."""
        essentials = {"supervision": self.health(), "event_loop": self._event_loop()}
        for name, check in self._readiness.items():
            try:
                await asyncio.wait_for(check(), timeout)
            except Exception as error:  # a check may fail in any way: that is its answer
                essentials[name] = Health(False, f"{type(error).__name__}: {error}")
            else:
                essentials[name] = Health(True, "ok")
        components = {group: dict(check()) for group, check in self._components.items()}
        return Readiness(essentials, components)

    async def stop(self) -> None:
        """Shut the tree down in reverse start order, then anything left unsupervised,
        all within ``settings.shutdown_timeout`` (see ``Supervisor.terminate``)."""
        deadline = time.monotonic() + self.settings.shutdown_timeout
        if self._root is not None:
            await self._root.terminate(self.settings.shutdown_timeout)
        if self._system is not None:
            await self._system.shutdown(max(0.0, deadline - time.monotonic()))
        if self._lag is not None:
            await self._lag.stop()
