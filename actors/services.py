"""The domain services on top of a started engine: pipelines and sessions."""

from __future__ import annotations

from dataclasses import dataclass

from actors.metrics import RealtimeMetrics
from actors.pipeline_registry import PipelineRegistry
from actors.pipelines import PipelineCatalog, PipelineConfig
from actors.session_registry import SessionRegistry
from engine.engine import Engine
from engine.storage import Store
from engine.supervisor import Supervisor

__all__ = ["Services", "start_services"]


@dataclass(frozen=True, slots=True)
class Services:
    pipelines: PipelineRegistry
    sessions: SessionRegistry
    metrics: RealtimeMetrics


def _group(engine: Engine, name: str) -> Supervisor:
    group = engine.root.child(name)
    assert isinstance(group, Supervisor), f"/{name} must be a supervisor"
    return group


async def start_services(
    engine: Engine, store: Store, catalog: PipelineCatalog | None = None
) -> Services:
    """Wire the registries to the engine's supervisors and the store, restore the
    stored pipelines, then start the boot pipelines (``EASEL_PIPELINES``) not already
    restored under the same name. Boot pipelines come from settings and are not stored.
    """
    metrics = RealtimeMetrics(engine.registry)
    pipelines = PipelineRegistry(
        _group(engine, "pipelines"), catalog or PipelineCatalog(), metrics, store.pipeline_configs
    )
    sessions = SessionRegistry(
        _group(engine, "sessions"), pipelines, engine.settings, metrics, store.sessions
    )
    await pipelines.restore()
    for name in filter(None, (n.strip() for n in engine.settings.pipelines.split(","))):
        if name not in pipelines.names():
            await pipelines.init(PipelineConfig(name=name, kind=name))
    engine.add_readiness_check("pipelines", pipelines.check_ready)
    return Services(pipelines, sessions, metrics)
