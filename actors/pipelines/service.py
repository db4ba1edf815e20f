"""The pipeline service: init, get, reload (blue/green) and shutdown of named pipelines.

Each pipeline lives under ``/pipelines/<name>`` as a ``one_for_one`` supervisor whose
children are its replicas (``g<generation>-r<index>``). Runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging

from actors.metrics import RealtimeMetrics
from actors.pipelines.handle import PipelineAnswer, PipelineHandle, PipelineJob
from actors.pipelines.replicas import check_hosting, replica_factory
from actors.plugins import PipelineCatalog, PipelineConfig, PluginContext
from actors.plugins.catalog import PluginClass
from engine.engine import Health
from engine.errors import Conflict, Invalid, NotFound, Unavailable
from engine.ref import ActorRef
from engine.storage import PipelineConfigPatch, PipelineConfigs
from engine.supervisor import ActorSpec, Backoff, Strategy, Supervisor, SupervisorSpec

__all__ = ["PipelineService"]

log = logging.getLogger(__name__)

Replicas = list[ActorRef[PipelineJob, PipelineAnswer]]

_STORED_FIELDS = ("kind", "replicas", "max_batch", "options", "hosting", "resources")
"""What a stored config holds besides its name."""


class PipelineService:
    """Named pipelines under one supervisor. Every method runs on the loop.

    Pipelines created through ``init(..., persist=True)`` are stored in ``configs``
    (the store's pipeline-config repository) and restored by ``restore`` at start.
    ``context`` is what plug-ins that ``uses_context`` are built with.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        catalog: PipelineCatalog,
        metrics: RealtimeMetrics,
        configs: PipelineConfigs | None = None,
        drain_timeout: float = 30.0,
        context: PluginContext | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.context = context or PluginContext()
        self.catalog = catalog
        self.metrics = metrics
        self.configs = configs
        self.drain_timeout = drain_timeout
        self._handles: dict[str, PipelineHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stored: dict[str, str] = {}
        """Pipeline name → id of its stored config."""

    def names(self) -> list[str]:
        return sorted(self._handles)

    def get(self, name: str) -> PipelineHandle:
        """The live pipeline called ``name``; raises ``NotFound``."""
        handle = self._handles.get(name)
        if handle is None:
            raise NotFound(f"no pipeline named {name!r}")
        return handle

    def _plugin(self, config: PipelineConfig) -> PluginClass:
        try:
            plugin = self.catalog.get(config.kind)
        except NotFound:
            raise Invalid(
                f"unknown pipeline kind {config.kind!r}; known: {', '.join(self.catalog.kinds())}"
            ) from None
        plugin.parse_options(config.options)
        check_hosting(plugin, config)
        return plugin

    async def restore(self) -> None:
        """Start every stored pipeline; one that can't start is logged and skipped (its
        stored config stays known, so a later create under its name replaces it)."""
        if self.configs is None:
            return
        offset = 0
        while True:
            page = await self.configs.list(limit=100, offset=offset)
            for stored in page.items:
                config = PipelineConfig.model_validate(
                    stored.model_dump(
                        include={
                            "name",
                            "kind",
                            "replicas",
                            "max_batch",
                            "options",
                            "hosting",
                            "resources",
                        }
                    )
                )
                self._stored[config.name] = stored.id
                try:
                    await self.init(config)
                except Exception:
                    log.exception("stored pipeline %s could not start", config.name)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def init(self, config: PipelineConfig, *, persist: bool = False) -> PipelineHandle:
        """Start a new pipeline and wait until every replica has loaded; with
        ``persist`` also store its config so it comes back after a restart.

        Raises ``Conflict`` if the name is taken, ``Invalid`` for a bad kind or options,
        ``Unavailable`` when the plug-in fails to load or the store is unreachable.
        """
        plugin = self._plugin(config)
        async with self._lock(config.name):
            if config.name in self._handles:
                raise Conflict(f"a pipeline named {config.name!r} exists")
            group = await self.supervisor.start_child(
                SupervisorSpec(
                    id=config.name,
                    strategy=Strategy.ONE_FOR_ONE,
                    max_restarts=20,
                    period=60,
                    backoff=Backoff(initial=0.05, maximum=5.0),
                )
            )
            assert isinstance(group, Supervisor)
            handle = PipelineHandle(config, plugin, self.metrics, context=self.context)
            try:
                replicas = await self._start_generation(group, handle, config, plugin, 1)
            except BaseException:
                await self.supervisor.terminate_child(config.name)
                raise
            if persist:
                try:
                    await self._persist(config)
                except BaseException:
                    await self.supervisor.terminate_child(config.name)
                    raise
            handle.switch(config, plugin, replicas)
            self._handles[config.name] = handle
        return handle

    async def _persist(self, config: PipelineConfig) -> None:
        """Store ``config`` under its name: create it, or replace what is stored."""
        if self.configs is None:
            return
        stored = self._stored.get(config.name)
        if stored is None:
            created = await self.configs.create(config)
            self._stored[config.name] = created.id
            return
        fields = config.model_dump(
            include={"kind", "replicas", "max_batch", "options", "hosting", "resources"}
        )
        await self.configs.update(stored, PipelineConfigPatch(**fields))

    async def reload(self, name: str, config: PipelineConfig | None = None) -> PipelineHandle:
        """Blue/green: warm new replicas, switch, drain the old ones, stop them.

        Sessions keep their handle throughout and no frame is lost: frames already
        queued on the old replicas finish there. If the new replicas fail to load, the
        old ones stay in service and ``Unavailable`` is raised.
        """
        async with self._lock(name):
            handle = self.get(name)
            config = config or handle.config
            if config.name != name:
                raise Invalid("a reload cannot rename a pipeline")
            plugin = self._plugin(config)
            group = self.supervisor.child(name)
            assert isinstance(group, Supervisor)
            generation = handle.generation + 1
            replicas = await self._start_generation(group, handle, config, plugin, generation)
            if name in self._stored:
                try:  # stored before the switch: a reload the store missed never happened
                    await self._persist(config)
                except BaseException:
                    for ref in replicas:
                        await group.terminate_child(ref.path.rsplit("/", 1)[1])
                    raise
            old = handle.switch(config, plugin, replicas)
            try:
                await self._drain(handle, old)
            finally:  # even if the reload is cancelled: the old generation must go
                for ref in old:
                    await group.terminate_child(ref.path.rsplit("/", 1)[1])
            return handle

    async def shutdown(self, name: str) -> None:
        """Stop a pipeline for good; sessions bound to it get ``Unavailable`` per frame."""
        async with self._lock(name):
            handle = self.get(name)
            handle.closed = True
            del self._handles[name]
            await self.supervisor.terminate_child(name)
            stored = self._stored.get(name)
            if stored is not None and self.configs is not None:
                await self.configs.delete(stored)
                del self._stored[name]

    def health(self) -> dict[str, Health]:
        """Each pipeline's readiness, by name: a restarting one (crashed, in its
        restart backoff or loading again) is not alive. Loop only."""
        return {
            name: Health(True, "ok") if handle.ready else Health(False, "restarting")
            for name, handle in sorted(self._handles.items())
        }

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _start_generation(
        self,
        group: Supervisor,
        handle: PipelineHandle,
        config: PipelineConfig,
        plugin: PluginClass,
        generation: int,
    ) -> Replicas:
        started: Replicas = []
        try:
            for index in range(config.replicas):
                ref = await group.start_child(
                    ActorSpec(
                        id=f"g{generation}-r{index}",
                        factory=replica_factory(plugin, config, handle),
                        kind="pipeline",
                        shutdown_timeout=30.0,
                    )
                )
                assert not isinstance(ref, Supervisor)
                started.append(ref)
        except BaseException as error:
            for ref in started:
                await group.terminate_child(ref.path.rsplit("/", 1)[1])
            if not isinstance(error, Exception):
                raise  # cancelled: nothing to translate
            raise Unavailable(f"pipeline {config.name} failed to load: {error}") from error
        return started

    async def _drain(self, handle: PipelineHandle, old: Replicas) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while handle.busy(old):
            if loop.time() > deadline:
                log.warning("pipeline %s: old replicas still busy after drain", handle.name)
                return
            await asyncio.sleep(0.005)
