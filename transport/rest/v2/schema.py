"""The bodies Comfy API v2 answers with, as typed models (the OpenAPI document is
generated from them, and every answer is built through them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "Asset",
    "ErrorBody",
    "ErrorEnvelope",
    "JobError",
    "JobList",
    "JobSummary",
    "JobUrls",
    "JobV2",
    "JobWorkflow",
    "Output",
    "Progress",
    "Status",
]

Status = Literal["queued", "running", "succeeded", "canceling", "canceled", "failed", "expired"]
OutputType = Literal["image", "video", "audio", "text", "file", "latent"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Progress(_Answer):
    """A complete progress snapshot: node-count and sampler-step weighted."""

    value: float = Field(ge=0.0, le=1.0)
    nodes_done: int
    nodes_total: int
    current_node: str | None = None
    current_node_class: str | None = None
    step: int | None = None
    steps: int | None = None
    message: str | None = None


class Output(_Answer):
    """A committed output; ``id`` is an asset id (``/api/v2/assets/{id}``)."""

    node_id: str
    name: str
    type: OutputType
    content_type: str
    size_bytes: int
    id: str
    hash: str | None
    url: str
    url_expires_at: AwareDatetime
    job_id: str | None = None


class JobError(_Answer):
    """Why a job failed (or expired)."""

    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None


class JobUrls(_Answer):
    self: str
    events: str
    cancel: str


class JobV2(_Answer):
    """One execution of a workflow: a fleet job seen through Comfy API v2."""

    id: str
    status: Status
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    expires_at: AwareDatetime
    queue_position: int | None
    progress: Progress | None
    outputs: list[Output]
    error: JobError | None
    metrics: dict[str, int | None] = Field(default_factory=dict)
    urls: JobUrls
    metadata: dict[str, str] = Field(default_factory=dict)
    priority: int = 0
    attempts: int = 0


class JobSummary(JobV2):
    """A job as a list shows it (also under the names the SDK's list reads)."""

    create_time: AwareDatetime
    update_time: AwareDatetime


class JobList(_Answer):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(
        default=None, description="Absent on the last page; pass it back as ?cursor="
    )


class JobWorkflow(_Answer):
    workflow: dict[str, Any]
    format: Literal["api", "save"]


class Asset(_Answer):
    """A record over content-addressed bytes (``hash``: ``blake3:<hex>``)."""

    id: str
    hash: str | None
    size_bytes: int
    content_type: str
    file_path: str | None = None
    created_new: bool | None = None
    created_at: AwareDatetime
    url: str
    url_expires_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    job_id: str | None = None


class ErrorBody(_Answer):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorEnvelope(_Answer):
    """Every error under ``/api/v2``."""

    error: ErrorBody
