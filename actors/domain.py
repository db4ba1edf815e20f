"""The domain on top of a started engine: the supervision tree's groups, the pipeline
and session services, and how they are wired together at start."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from actors.comfyui.dispatcher import Dispatcher, DispatcherActor
from actors.comfyui.fleet import FleetService
from actors.comfyui.frames import FrameRouter
from actors.comfyui.jobs import JobService
from actors.comfyui.metrics import FleetMetrics
from actors.comfyui.retention import Retention, RetentionActor
from actors.comfyui.tracker import JobTracker
from actors.metrics import RealtimeMetrics
from actors.pipelines.service import PipelineService
from actors.plugins import BUILTIN_PIPELINES, PipelineCatalog, PipelineConfig, PluginContext
from actors.plugins.comfyui import ComfyUi
from actors.sessions.service import SessionService
from engine.engine import Engine
from engine.storage import Store
from engine.supervisor import ActorSpec, ChildSpec, Strategy, Supervisor, SupervisorSpec

__all__ = ["Domain", "start_domain", "supervision_tree"]


def supervision_tree() -> tuple[ChildSpec, ...]:
    """The root's children in start order; stopped in reverse (docs/architecture.md).

    ``/pipelines`` holds one supervisor per named pipeline, ``/comfyui/servers`` one
    actor per registered ComfyUI server, ``/comfyui/dispatcher`` the job dispatcher and
    ``/comfyui/retention`` the retention sweep (added at start, after the servers, so
    they stop before them), ``/sessions`` one actor per session.
    """
    return (
        SupervisorSpec(id="pipelines", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30),
        SupervisorSpec(
            id="comfyui",
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=10,
            period=30,
            children=(
                SupervisorSpec(
                    id="servers", strategy=Strategy.ONE_FOR_ONE, max_restarts=10, period=30
                ),
            ),
        ),
        SupervisorSpec(id="sessions", strategy=Strategy.ONE_FOR_ONE, max_restarts=100, period=10),
    )


@dataclass(frozen=True, slots=True)
class Domain:
    pipelines: PipelineService
    sessions: SessionService
    metrics: RealtimeMetrics
    fleet: FleetService
    jobs: JobService
    tracker: JobTracker
    """The jobs this node drives (``tracker.live.preview(job_id)``: a running job's newest
    preview)."""


def _group(engine: Engine, name: str) -> Supervisor:
    group = engine.root.child(name)
    assert isinstance(group, Supervisor), f"/{name} must be a supervisor"
    return group


async def start_domain(
    engine: Engine, store: Store, catalog: PipelineCatalog | None = None
) -> Domain:
    """Wire the services to the engine's supervisors and the store, start the ComfyUI
    fleet (pipelines of kind ``comfyui`` run on it), restore the stored pipelines, then
    start the boot pipelines (``EASEL_PIPELINES``) not already restored under the same
    name. Boot pipelines come from settings and are not stored.
    """
    metrics = RealtimeMetrics(engine.registry)
    fleet, jobs, frames, tracker = await _start_fleet(engine, store)
    pipelines = PipelineService(
        _group(engine, "pipelines"),
        catalog or PipelineCatalog(builtins=(*BUILTIN_PIPELINES, ComfyUi)),
        metrics,
        store.pipeline_configs,
        context=PluginContext(comfyui=frames),
    )
    sessions = SessionService(
        _group(engine, "sessions"), pipelines, engine.settings, metrics, store.sessions, jobs
    )
    await pipelines.restore()
    for name in filter(None, (n.strip() for n in engine.settings.pipelines.split(","))):
        if name not in pipelines.names():
            await pipelines.init(PipelineConfig(name=name, kind=name))
    engine.add_component_check("pipelines", pipelines.health)
    return Domain(pipelines, sessions, metrics, fleet, jobs, tracker)


async def _start_fleet(
    engine: Engine, store: Store
) -> tuple[FleetService, JobService, FrameRouter, JobTracker]:
    """Restore the ComfyUI servers, then start the dispatcher (``/comfyui/dispatcher``)
    and the retention sweep (``/comfyui/retention``);
    the router places realtime frames on the same servers, counting this node's jobs
    against each server's ``max_in_flight``."""
    settings = engine.settings
    group = _group(engine, "comfyui")
    servers = group.child("servers")
    assert isinstance(servers, Supervisor), "/comfyui/servers must be a supervisor"
    node_id = settings.node_id or uuid.uuid4().hex[:12]
    fleet = FleetService(servers, store.comfy_servers, settings, node_id)
    await fleet.restore()
    fleet_metrics = FleetMetrics(engine.registry)
    jobs = JobService(store.jobs, store.media, fleet, settings)
    tracker = JobTracker(
        store.jobs,
        store.media,
        fleet,
        node_id,
        settings.job_lease,
        fleet_metrics,
        jobs.changed,
        lost_after=settings.job_lost_after,
    )
    # Only the embedded SQLite default is certain to have this process alone on its
    # database: there, jobs left in flight by the last run are taken over at once.
    exclusive = settings.store_backend == "sql" and settings.database_url is None
    dispatcher = Dispatcher(
        store.jobs, store.media, fleet, tracker, settings, fleet_metrics, exclusive=exclusive
    )
    jobs.wake_with(dispatcher.wake)
    jobs.previews_from(tracker.live.preview)
    await group.start_child(
        ActorSpec(
            id="dispatcher",
            factory=lambda: DispatcherActor(dispatcher),
            kind="comfyui",
            # the changes under way get their grace to finish, and a little more
            shutdown_timeout=JobTracker.STOP_GRACE + 2.0,
        )
    )
    retention = Retention(store.jobs, store.media, jobs, settings, fleet_metrics)
    await group.start_child(
        ActorSpec(id="retention", factory=lambda: RetentionActor(retention), kind="comfyui")
    )
    frames = FrameRouter(
        fleet, held=lambda server: sum(job.server_id == server for job in tracker.held())
    )
    return fleet, jobs, frames, tracker
