"""A real engine with a pipeline service, and a scripted plug-in the test steers.

``Script`` is shared between a test (on the loop) and the plug-in instances it makes
(on their replica threads): it records which frames entered and finished ``process``
and holds frames (or loads) until the test lets them go. Frames say what to do through
their params (``tag``, ``hold``, ``after``, ``crash``), so one plug-in serves every test.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from actors.domain import supervision_tree
from actors.metrics import RealtimeMetrics
from actors.pipelines.service import PipelineService
from actors.plugins import (
    BUILTIN_PIPELINES,
    Answer,
    FrameIn,
    Params,
    Pipeline,
    PipelineCatalog,
    PluginClass,
)
from actors.plugins.passthrough import echo
from engine.engine import Engine
from engine.settings import Settings
from engine.storage import PipelineConfigs, Store, open_store
from engine.supervisor import Supervisor

SCRIPTED = "scripted"
WAIT = 5.0
"""Seconds a held frame or load waits at most: a broken test fails instead of hanging."""


class ScriptParams(Params):
    tag: int = 0
    """How the script names this frame (tests use the frame's seq)."""
    hold: bool = False
    """Wait in ``process`` while the script is held."""
    after: int = -1
    """Wait in ``process`` until the frame tagged ``after`` has finished."""
    crash: bool = False
    """Raise from ``process`` (a broken pipeline: its replica crashes)."""


class Script:
    """What the scripted plug-in does, and what happened to it. Any thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.entered: list[int] = []
        self.finished: list[int] = []
        self.loads = 0
        self._open = True
        self._loads_open = True
        self._inside = 0
        self.most_inside = 0
        """The most frames ever in ``process`` at the same time."""

    def hold(self) -> None:
        with self._cond:
            self._open = False

    def release(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def hold_loads(self) -> None:
        """Make every later ``load`` wait for ``release_loads``."""
        with self._cond:
            self._loads_open = False

    def release_loads(self) -> None:
        with self._cond:
            self._loads_open = True
            self._cond.notify_all()

    def release_all(self) -> None:
        self.release()
        self.release_loads()

    def load(self) -> None:
        with self._cond:
            self.loads += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._loads_open, WAIT)

    def run(self, frame: FrameIn[ScriptParams]) -> Answer:
        params = frame.params
        with self._cond:
            self.entered.append(params.tag)
            self._inside += 1
            self.most_inside = max(self.most_inside, self._inside)
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    (self._open or not params.hold)
                    and (params.after < 0 or params.after in self.finished)
                ),
                WAIT,
            )
            self._inside -= 1
        if params.crash:
            raise RuntimeError(f"scripted crash on frame {params.tag}")
        with self._cond:
            self.finished.append(params.tag)
            self._cond.notify_all()
        return echo(frame)


def scripted_plugin(script: Script) -> PluginClass:
    """A blocking plug-in (one frame per ``process`` call) that follows ``script``."""

    class Scripted(Pipeline[ScriptParams]):
        name = SCRIPTED
        params_model = ScriptParams
        max_batch = 1

        def load(self) -> None:
            script.load()

        def process(self, batch: Sequence[FrameIn[ScriptParams]]) -> list[Answer]:
            return [script.run(frame) for frame in batch]

    return Scripted


def no_entry_points(group: str) -> Iterable[EntryPoint]:
    return ()


def catalog_for(script: Script) -> PipelineCatalog:
    """The built-in kinds plus ``scripted``; no installed plug-ins."""
    return PipelineCatalog((*BUILTIN_PIPELINES, scripted_plugin(script)), no_entry_points)


@dataclass
class Rig:
    """A started engine with the production supervision tree and a pipeline service."""

    engine: Engine
    settings: Settings
    metrics: RealtimeMetrics
    pipelines: PipelineService
    script: Script

    @property
    def sessions_group(self) -> Supervisor:
        group = self.engine.root.child("sessions")
        assert isinstance(group, Supervisor)
        return group

    @property
    def pipelines_group(self) -> Supervisor:
        group = self.engine.root.child("pipelines")
        assert isinstance(group, Supervisor)
        return group

    def sample(self, name: str, **labels: str) -> float:
        """A metric's value on the engine's registry (0 when it has none yet)."""
        return self.engine.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def open_rig(configs: PipelineConfigs | None = None, **overrides: Any) -> AsyncIterator[Rig]:
    """Start an engine (no boot pipelines) and a pipeline service on it; stop both after."""
    settings = Settings(**{"pipelines": "", **overrides})
    script = Script()
    engine = Engine(settings, supervision_tree())
    await engine.start()
    try:
        metrics = RealtimeMetrics(engine.registry)
        group = engine.root.child("pipelines")
        assert isinstance(group, Supervisor)
        service = PipelineService(group, catalog_for(script), metrics, configs, drain_timeout=5.0)
        yield Rig(engine, settings, metrics, service, script)
    finally:
        script.release_all()  # nothing may stay held while the replicas stop
        await engine.stop()


def migrated_store_files(directory: Path) -> Path:
    """Create an empty SQLite store, migrated, in ``directory``; for a session-scoped
    (synchronous) fixture, so each test copies it instead of migrating again."""

    async def build() -> None:
        store = await open_store(Settings(data_dir=directory), CollectorRegistry())
        await store.close()

    asyncio.run(build())
    return directory


async def open_copied_store(template: Path, data_dir: Path) -> Store:
    """A real SQLite store in ``data_dir``, started from a copy of ``template``."""
    shutil.copytree(template, data_dir, dirs_exist_ok=True)
    return await open_store(Settings(data_dir=data_dir), CollectorRegistry())
