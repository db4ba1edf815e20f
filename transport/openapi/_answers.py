"""What the routes answer: a model for every success body the document describes.

Records the routes dump whole (``Project``, ``Scene``, ``Clip``) are described by their
own models; these are the bodies the routes assemble from a record or a view. They
describe, they don't forbid: a field added to a body is no breach of its schema, a
field removed or retyped is (the schemathesis run in the tests checks every answer).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from actors.comfyui.server import ServerState
from engine.storage import Clip, JobStatus, Project, Role, Scene
from engine.types import DrainStrategy, Hosting

__all__ = [
    "Alive",
    "ApiKeyPage",
    "ApiKeyView",
    "ClipPage",
    "IssuedApiKey",
    "JobBatch",
    "JobPage",
    "JobView",
    "JobWithWorkflow",
    "MediaView",
    "NewSessionView",
    "PipelineList",
    "PipelineView",
    "ProjectPage",
    "Readiness",
    "SceneList",
    "ScenePage",
    "ServerList",
    "ServerModels",
    "ServerView",
    "SessionList",
    "SessionView",
]


class Alive(BaseModel):
    """``GET /health``: whether the root supervisor stands."""

    status: str = Field(description="ok, or failed")
    detail: str


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str


class ComponentState(BaseModel):
    state: Literal["ok", "degraded"]
    detail: str


class Readiness(BaseModel):
    """``GET /ready``: 200 while the essentials work (``status`` ``ok``, or
    ``degraded`` when a pipeline is), 503 (``unavailable``) when one does not."""

    status: Literal["ok", "degraded", "unavailable"]
    ready: bool
    checks: dict[str, ReadinessCheck]
    pipelines: dict[str, ComponentState] = {}


class PipelineView(BaseModel):
    name: str
    kind: str
    replicas: int
    max_batch: int | None
    options: dict[str, Any]
    hosting: Hosting
    resources: dict[str, float] | None
    generation: int
    ready: bool
    params_schema: dict[str, Any] = Field(description="JSON Schema of the session params")


class PipelineList(BaseModel):
    items: list[PipelineView]
    total: int


class SessionStats(BaseModel):
    frames_in: int
    frames_out: int
    superseded: int
    errors: int
    last_total_ms: float | None


class SessionView(BaseModel):
    id: str
    pipeline: str
    drain: DrainStrategy
    params: dict[str, Any]
    attached: bool
    created_at: float = Field(description="Unix time")
    stats: SessionStats


class NewSessionView(SessionView):
    token: str = Field(description="Resumes the session; shown once")
    ws_url: str


class SessionList(BaseModel):
    items: list[SessionView]
    total: int


class _Page(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None
    """Where the next page starts (``null``: no more); a page may end before ``limit``
    items when they pass its byte bound."""


class ProjectPage(_Page):
    items: list[Project]


class ScenePage(_Page):
    items: list[Scene]


class ClipPage(_Page):
    items: list[Clip]


class SceneList(BaseModel):
    items: list[Scene]
    total: int


class MediaView(BaseModel):
    id: str
    content_type: str
    size: int
    sha256: str
    filename: str
    created_at: datetime
    url: str


class ApiKeyView(BaseModel):
    id: str
    name: str
    role: Role
    created_at: datetime


class IssuedApiKey(ApiKeyView):
    token: str = Field(description="The key's secret; shown once")


class ApiKeyPage(_Page):
    items: list[ApiKeyView]


class ServerHealth(BaseModel):
    queue_remaining: int
    comfyui_version: str | None
    devices: list[dict[str, Any]]
    error: str | None
    checked_at: float | None = Field(description="Unix time of the last health answer")
    connects: int


class ServerView(BaseModel):
    id: str
    name: str
    url: str
    max_in_flight: int
    tags: list[str]
    state: ServerState
    health: ServerHealth


class ServerList(BaseModel):
    items: list[ServerView]
    total: int


class ServerModels(BaseModel):
    id: str
    name: str
    fetched_at: float | None
    node_types: list[str]
    models: dict[str, list[str]] = Field(description="Model files by folder")


class JobOutputView(BaseModel):
    media_id: str
    kind: str
    node: str
    url: str


class JobView(BaseModel):
    id: str
    name: str
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    server_id: str | None
    node: str | None
    prompt_id: str | None
    progress: float
    error: str | None
    node_errors: dict[str, Any]
    outputs: list[JobOutputView]
    cancel_requested: bool
    idempotency_key: str | None
    params: dict[str, Any]
    created_at: datetime | None
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class JobWithWorkflow(JobView):
    workflow: dict[str, Any]


class JobPage(_Page):
    items: list[JobView]


class JobBatch(BaseModel):
    items: list[JobView]
    total: int
