"""The domain on top of a started engine: the supervision tree's groups, the pipeline
and session services, and how they are wired together at start."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from actors.comfyui.fleet import FleetService
from actors.metrics import RealtimeMetrics
from actors.pipelines.service import PipelineService
from actors.plugins import PipelineCatalog, PipelineConfig
from actors.sessions.service import SessionService
from engine.engine import Engine
from engine.storage import Store
from engine.supervisor import ChildSpec, Strategy, Supervisor, SupervisorSpec

__all__ = ["Domain", "start_domain", "supervision_tree"]


def supervision_tree() -> tuple[ChildSpec, ...]:
    """The root's children in start order; stopped in reverse (docs/architecture.md).

    ``/pipelines`` holds one supervisor per named pipeline, ``/comfyui`` one actor per
    registered ComfyUI server, ``/sessions`` one actor per session.
    """
    return (
        SupervisorSpec(id="pipelines", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30),
        SupervisorSpec(id="comfyui", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30),
        SupervisorSpec(id="sessions", strategy=Strategy.ONE_FOR_ONE, max_restarts=100, period=10),
    )


@dataclass(frozen=True, slots=True)
class Domain:
    pipelines: PipelineService
    sessions: SessionService
    metrics: RealtimeMetrics
    fleet: FleetService


def _group(engine: Engine, name: str) -> Supervisor:
    group = engine.root.child(name)
    assert isinstance(group, Supervisor), f"/{name} must be a supervisor"
    return group


async def start_domain(
    engine: Engine, store: Store, catalog: PipelineCatalog | None = None
) -> Domain:
    """Wire the services to the engine's supervisors and the store, restore the
    stored pipelines, then start the boot pipelines (``EASEL_PIPELINES``) not already
    restored under the same name. Boot pipelines come from settings and are not stored.
    """
    metrics = RealtimeMetrics(engine.registry)
    pipelines = PipelineService(
        _group(engine, "pipelines"), catalog or PipelineCatalog(), metrics, store.pipeline_configs
    )
    sessions = SessionService(
        _group(engine, "sessions"), pipelines, engine.settings, metrics, store.sessions
    )
    node_id = engine.settings.node_id or uuid.uuid4().hex[:12]
    fleet = FleetService(_group(engine, "comfyui"), store.comfy_servers, engine.settings, node_id)
    await pipelines.restore()
    await fleet.restore()
    for name in filter(None, (n.strip() for n in engine.settings.pipelines.split(","))):
        if name not in pipelines.names():
            await pipelines.init(PipelineConfig(name=name, kind=name))
    engine.add_readiness_check("pipelines", pipelines.check_ready)
    return Domain(pipelines, sessions, metrics, fleet)
