"""The typed records every repository stores and returns, on every backend.

Records are frozen pydantic models. ``New*`` models are what a caller supplies to
create a record; ``*Patch`` models carry the fields an update changes (unset fields
are left alone). Timestamps are UTC with millisecond precision, the finest every
backend keeps, so a record reads back equal to what was written.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from engine.types import Hosting, PipelineConfig

__all__ = [
    "ApiKey",
    "Clip",
    "ClipPatch",
    "ComfyServer",
    "ComfyServerPatch",
    "Job",
    "JobOutput",
    "JobPatch",
    "JobPhase",
    "JobStatus",
    "Media",
    "NewApiKey",
    "NewClip",
    "NewComfyServer",
    "NewJob",
    "NewProject",
    "NewScene",
    "NewSession",
    "Page",
    "PipelineConfigPatch",
    "PipelineConfigRecord",
    "Project",
    "ProjectPatch",
    "Record",
    "Role",
    "Scene",
    "ScenePatch",
    "SessionPatch",
    "SessionRecord",
    "SessionStatus",
    "new_id",
    "now",
]


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored timestamp is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def now() -> datetime:
    """The current UTC time truncated to milliseconds (what MongoDB keeps)."""
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def new_id() -> str:
    """A fresh record id: 32 lowercase hex digits, increasing with time.

    The first 16 digits are the wall clock in nanoseconds, so listings ordered by
    ``(created_at, id)`` keep creation order even within one millisecond; the
    last 16 are random.
    """
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Record(_Model):
    """Base of every stored record: an id and when it was created and last changed."""

    id: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


R = TypeVar("R", bound=Record)


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    """One page of a listing: ``items`` from ``offset``, and how many match in all."""

    items: tuple[R, ...]
    total: int
    limit: int
    offset: int


# -- pipeline configs ---------------------------------------------------------------


class PipelineConfigPatch(_Model):
    """Changes to a config; ``max_batch=None`` given explicitly restores the kind's default."""

    kind: Name | None = None
    replicas: int | None = Field(default=None, ge=1, le=64)
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    options: dict[str, Any] | None = None
    hosting: Hosting | None = None
    """``None`` given explicitly restores the kind's default, as for ``max_batch``."""
    resources: dict[str, float] | None = None


class PipelineConfigRecord(Record, PipelineConfig):
    """A stored ``PipelineConfig`` (``engine.types``); ``name`` is unique."""


# -- sessions -----------------------------------------------------------------------


class SessionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class NewSession(_Model):
    pipeline: Name
    drain: str = Field(default="latest", max_length=32)
    client: str = Field(default="", max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    owner: Owner = None


class SessionPatch(_Model):
    """Changes to an open session's client or params."""

    client: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] | None = None


class SessionRecord(Record, NewSession):
    """A canvas session's metadata; ``stats`` holds its final counters once closed."""

    status: SessionStatus = SessionStatus.OPEN
    ended_at: UtcDatetime | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
    node_id: str | None = Field(default=None, max_length=32)
    """The engine node that opened it (``None``: stored before sessions had nodes)."""
    end_reason: str | None = Field(default=None, max_length=32)
    """``engine_restart`` when its node, starting again, found it left open (the
    process that ran it died); ``None`` otherwise."""


# -- ComfyUI servers ----------------------------------------------------------------


class NewComfyServer(_Model):
    name: Name
    url: Name
    enabled: bool = True
    max_jobs: int = Field(default=1, ge=1, le=1024)
    """Jobs the dispatcher keeps in flight on this server at most, across every node."""
    tags: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(
        default=(), max_length=32
    )


class ComfyServerPatch(_Model):
    url: Name | None = None
    enabled: bool | None = None
    max_jobs: int | None = Field(default=None, ge=1, le=1024)
    tags: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] | None = None


class ComfyServer(Record, NewComfyServer):
    """A ComfyUI server the dispatcher may send jobs to; ``name`` and ``url`` are unique."""


# -- jobs ---------------------------------------------------------------------------


class JobStatus(StrEnum):
    """queued → dispatched → running → succeeded | failed | cancelled (a lost
    dispatched or running job goes back to queued); a job still unfinished when its
    retention runs out ends ``expired``."""

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class JobOutput(_Model):
    """One output of a job: a media record, its kind and the node that produced it."""

    media_id: str
    kind: str = "image"
    node: str = ""
    name: str = ""
    """The file name the server gave it."""
    content_type: str = "application/octet-stream"
    size: int = 0
    blake3: str | None = None


class JobPhase(_Model):
    """One step of a job's history: its status (and whether a cancel was asked) from
    ``version`` on, since ``at``."""

    status: JobStatus
    cancel: bool = False
    version: int
    at: float
    """Unix time (seconds)."""


class NewJob(_Model):
    """A job as submitted. ``workflow`` names it; ``prompt`` is the ComfyUI graph in API
    format (node id → ``{class_type, inputs}``); a lower ``priority`` runs first."""

    workflow: Name
    params: dict[str, Any] = Field(default_factory=dict)
    server_id: str | None = Field(default=None, max_length=32)
    prompt: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_attempts: int = Field(default=3, ge=1, le=100)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    """Unique per owner: another key's job with the same key is another job."""
    owner: Owner = None
    labels: dict[str, str] = Field(default_factory=dict)
    """String labels the submitter attached (Comfy API v2 ``metadata``)."""
    expires_at: UtcDatetime | None = None
    """When its retention runs out (``None``: not set yet; the retention sweep sets it)."""


class JobPatch(_Model):
    status: JobStatus | None = None
    server_id: str | None = Field(default=None, max_length=32)
    outputs: tuple[JobOutput, ...] | None = None
    error: str | None = None


class Job(Record, NewJob):
    """A generation job, its status, its attempts, its lease and its outputs.

    ``prompt_id`` is the id its current attempt has on ``server_id``; ``slot``
    (``<server id>/<n>``, unique) holds one of the server's in-flight places while
    the job is dispatched or running. ``lease_owner`` is the engine node that drives
    it until ``lease_expires``. ``version`` grows with every change the dispatcher
    makes, so each of its updates applies only to the state it read.
    """

    status: JobStatus = JobStatus.QUEUED
    outputs: tuple[JobOutput, ...] = ()
    error: str | None = None
    node_errors: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    progress: float = 0.0
    prompt_id: str | None = None
    slot: str | None = None
    lease_owner: str | None = None
    lease_expires: UtcDatetime | None = None
    cancel_requested: bool = False
    dispatched_at: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    version: int = 0
    detail: dict[str, Any] = Field(default_factory=dict)
    """The running attempt's progress in detail: ``nodes_done``, ``nodes_total``,
    ``current_node``, ``current_node_class``, ``step``, ``steps``."""
    history: tuple[JobPhase, ...] = ()
    """Each change of status (or of ``cancel_requested``), oldest first: what a
    reconnecting event stream replays."""


# -- media --------------------------------------------------------------------------


class Media(Record):
    """Metadata of stored bytes; the bytes live in the media store on disk."""

    content_type: Name
    filename: str = Field(default="", max_length=255)
    size: int = Field(ge=0)
    sha256: str
    owner: Owner = None
    blake3: str | None = Field(default=None, max_length=71)
    """``blake3:<hex>`` of the bytes (``None`` for media stored before it was kept)."""
    job_id: str | None = Field(default=None, max_length=32)
    """The job that produced it (``None`` for an upload)."""
    expires_at: UtcDatetime | None = None
    """When the retention sweep deletes it (``None``: kept until deleted)."""


# -- projects, scenes, clips --------------------------------------------------------


MAX_DESCRIPTION = 10_000


def _description(value: str) -> str:
    # a validator, not ``max_length``: pydantic's constrained strings refuse lone
    # surrogates at construction, and the repositories report those themselves
    if len(value) > MAX_DESCRIPTION:
        raise ValueError(f"at most {MAX_DESCRIPTION} characters")
    return value


Description = Annotated[str, AfterValidator(_description)]


class NewProject(_Model):
    name: Name
    description: Description = ""


class ProjectPatch(_Model):
    name: Name | None = None
    description: Description | None = None


class Project(Record, NewProject):
    """A project: an ordered list of scenes; ``name`` is unique per owner."""

    owner: Owner = None


class NewScene(_Model):
    name: Name


class ScenePatch(_Model):
    name: Name | None = None


class Scene(Record, NewScene):
    """A scene of a project at ``position`` (0-based, dense) in the project's order."""

    project_id: str
    position: int = Field(ge=0)


class NewClip(_Model):
    name: str = Field(default="", max_length=200)
    start: float = Field(ge=0)
    duration: float = Field(gt=0)
    media_id: str | None = Field(default=None, max_length=32)


class ClipPatch(_Model):
    name: str | None = Field(default=None, max_length=200)
    start: float | None = Field(default=None, ge=0)
    duration: float | None = Field(default=None, gt=0)
    media_id: str | None = Field(default=None, max_length=32)


class Clip(Record, NewClip):
    """A clip on a scene's timeline: ``start`` and ``duration`` in seconds, a media reference."""

    project_id: str
    scene_id: str


# -- API keys -----------------------------------------------------------------------


Role = Literal["admin", "client", "metrics"]
"""What a key may do: ``admin`` everything, ``client`` its own sessions, projects and
media, ``metrics`` scrape ``/metrics``."""

Owner = Annotated[str | None, Field(default=None, max_length=32)]
"""The id of the API key that created a record; ``None`` when auth is off (admin's)."""


class NewApiKey(_Model):
    name: Name
    role: Role = "client"
    scopes: tuple[Annotated[str, Field(max_length=64)], ...] = Field(default=(), max_length=32)


class ApiKey(Record, NewApiKey):
    """An API key's metadata; only a hash of the secret is stored."""

    secret_hash: str
