"""``/api/v2/jobs``: Comfy API v2 jobs, which are the fleet's durable jobs.

::

    POST /api/v2/jobs                   submit (single-use Idempotency-Key)
    GET  /api/v2/jobs                   newest first: ?limit= &cursor= &metadata[k]=v &status=
    GET  /api/v2/jobs/{id}              one job
    GET  /api/v2/jobs/{id}/workflow     the graph it runs (``format: api``)
    POST /api/v2/jobs/{id}/cancel       cancel: ``canceling`` until its server confirms
    GET  /api/v2/jobs/{id}/events       Server-Sent Events (see :mod:`.events`)

A job submitted here is the same record ``/api/v1/jobs`` shows, and the reverse. Its
v2 status is read from the fleet's: queued and dispatched are ``queued``, a job whose
cancel was asked is ``canceling`` until it ends, ``cancelled`` is ``canceled``. A job
its server lost is queued again and runs elsewhere; ``expired`` only means its
retention ran out before it ended.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.comfyui.jobs import JobService, check_prompt
from engine.errors import Conflict, Invalid, NotFound, Overloaded
from engine.storage import Job, JobStatus, NewJob
from engine.storage.records import JobOutput
from transport.auth import Role, principal, requires
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, read_body
from transport.rest.v2.errors import (
    PREFIX,
    InvalidCursor,
    InvalidMetadataFilter,
    InvalidWorkflow,
    MetadataInvalid,
    QueueFull,
    WorkflowFormatUi,
)
from transport.rest.v2.links import origin
from transport.rest.v2.schema import (
    JobError,
    JobList,
    JobSummary,
    JobUrls,
    JobV2,
    JobWorkflow,
    Output,
    Progress,
)

__all__ = ["JOB", "JOBS", "SubmitV2", "describe", "routes", "v2_status"]

routes = web.RouteTableDef()

JOBS = PREFIX + "/jobs"
JOB = JOBS + "/{job_id}"

MAX_LABELS = 16
MAX_FILTERS = 3
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_LABEL_VALUE_BYTES = 256
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MAX_KEY = 255
_STORED_KEY = 200
_KEY_TEXT = re.compile(r"^[\x21-\x7e]+$")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_SCAN = 1000
"""The most jobs one list request reads looking for matches (its cursor goes on)."""

_STATUSES = ("queued", "running", "succeeded", "canceling", "canceled", "failed", "expired")
_ENDED = {
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "canceled",
    JobStatus.EXPIRED: "expired",
}
_KINDS = {"image", "video", "audio", "text", "file", "latent"}


class ExtraData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key_comfy_org: str = Field(max_length=4096)


class SubmitV2(BaseModel):
    """A Comfy API v2 submission (``webhook_url`` and ``inputs`` are reserved)."""

    model_config = ConfigDict(extra="allow")

    workflow: dict[str, Any] = Field(description="The graph in ComfyUI's API format.")
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"String labels (at most {MAX_LABELS}), kept on the job."
    )
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="lower runs first")
    extra_data: ExtraData | None = Field(
        default=None,
        description="Refused: jobs are stored durably and a credential is never stored.",
    )


def v2_status(job: Job) -> str:
    """The Comfy API v2 status of a job."""
    ended = _ENDED.get(job.status)
    if ended is not None:
        return ended
    if job.cancel_requested:
        return "canceling"
    return "running" if job.status is JobStatus.RUNNING else "queued"


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def expires_at(job: Job, retention: float) -> datetime:
    return job.expires_at or job.created_at + timedelta(seconds=retention)


def output(job: Job, item: JobOutput, base: str, retention: float) -> Output:
    """An Output: an output is an asset, read at ``/api/v2/assets/{id}``."""
    return Output(
        node_id=item.node,
        name=item.name or item.media_id,
        type=item.kind if item.kind in _KINDS else "file",
        content_type=item.content_type,
        size_bytes=item.size,
        id=item.media_id,
        hash=item.blake3,
        url=f"{base}{PREFIX}/assets/{item.media_id}/content",
        url_expires_at=expires_at(job, retention),
        job_id=job.id,
    )


def progress(job: Job) -> Progress | None:
    """The progress snapshot (``None`` before the job runs)."""
    if job.status in (JobStatus.QUEUED, JobStatus.DISPATCHED) and not job.detail:
        return None
    detail = job.detail
    value = 1.0 if job.status is JobStatus.SUCCEEDED else min(1.0, max(0.0, job.progress))
    step, steps = _integer(detail.get("step")), _integer(detail.get("steps"))
    node_class = detail.get("current_node_class")
    node = detail.get("current_node")
    return Progress(
        value=value,
        nodes_done=_integer(detail.get("nodes_done")) or 0,
        nodes_total=_integer(detail.get("nodes_total")) or 0,
        current_node=str(node) if node is not None else None,
        current_node_class=node_class if isinstance(node_class, str) else None,
        step=step,
        steps=steps,
        message=f"{node_class} {step}/{steps}" if node_class and steps else None,
    )


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def error(job: Job) -> JobError | None:
    """Why a job failed or expired."""
    if job.status is JobStatus.EXPIRED:
        return JobError(code="expired", message=job.error or "its retention ran out")
    if job.status is not JobStatus.FAILED:
        return None
    node_id = next(iter(job.node_errors), None)
    node = job.node_errors.get(node_id) if node_id is not None else None
    class_type = node.get("class_type") if isinstance(node, dict) else None
    return JobError(
        code="invalid_workflow" if job.node_errors else "node_execution_error",
        message=job.error or "the job failed",
        node_id=node_id,
        class_type=class_type if isinstance(class_type, str) else None,
    )


def describe(job: Job, base: str, retention: float, queue_position: int | None = None) -> JobV2:
    """The job as Comfy API v2 shows it."""
    link = f"{base}{JOBS}/{job.id}"
    return JobV2(
        id=job.id,
        status=v2_status(job),
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.finished_at if job.status in _ENDED else None,
        expires_at=expires_at(job, retention),
        queue_position=queue_position,
        progress=progress(job),
        outputs=[output(job, item, base, retention) for item in job.outputs],
        error=error(job),
        metrics={
            "queue_ms": _ms(job.created_at, job.started_at),
            "execution_ms": _ms(job.started_at, job.finished_at),
        },
        urls=JobUrls(self=link, events=link + "/events", cancel=link + "/cancel"),
        metadata=dict(job.labels),
        priority=job.priority,
        attempts=job.attempts,
    )


async def describe_now(request: web.Request, job: Job) -> JobV2:
    """The job, with its place in the queue while it waits to be dispatched."""
    jobs = _service(request)
    position = None
    if job.status is JobStatus.QUEUED and not job.cancel_requested:
        position = await jobs.queue_position(job)
    elif job.status is JobStatus.DISPATCHED:
        position = 0  # sent to its server, next to run there
    return describe(job, origin(request), jobs.settings.job_retention, position)


def answer(model: BaseModel, status: int = 200) -> web.Response:
    """A JSON answer from a v2 model (nullable fields are written as ``null``)."""
    return json_response(model.model_dump(mode="json", exclude_unset=False), status=status)


def _service(request: web.Request) -> JobService:
    return request.app[DOMAIN].jobs


async def own_job(request: web.Request) -> Job:
    """The job in the path if the caller may see it. Raises ``NotFound``."""
    try:
        job = await _service(request).get(request.match_info["job_id"])
    except NotFound:
        job = None
    if job is None or not principal(request).owns(job.owner):
        raise NotFound(f"no job {request.match_info['job_id']}")
    return job


def _labels(raw: dict[str, Any] | None) -> dict[str, str]:
    if not raw:
        return {}
    if len(raw) > MAX_LABELS:
        raise MetadataInvalid(f"metadata has {len(raw)} pairs; at most {MAX_LABELS} are allowed")
    for key, value in raw.items():
        if not _LABEL_KEY.match(key):
            raise MetadataInvalid(
                f"metadata key {key[:50]!r}: 1 to 40 letters, digits, '_', '.' or '-'", key=key
            )
        if not isinstance(value, str):
            raise MetadataInvalid(f"metadata {key!r}: the value must be a string", key=key)
        if len(value.encode()) > _LABEL_VALUE_BYTES or _FORBIDDEN.search(value):
            raise MetadataInvalid(
                f"metadata {key!r}: at most {_LABEL_VALUE_BYTES} bytes, no control characters",
                key=key,
            )
    return {str(k): str(v) for k, v in raw.items()}


def _idempotency_key(request: web.Request) -> str | None:
    """The key as stored: one longer than the column (the SDK allows 255 characters)
    is kept as its SHA-256, as unique as the key itself."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= _MAX_KEY and _KEY_TEXT.match(key)):
        raise Invalid(f"Idempotency-Key: 1 to {_MAX_KEY} printable ASCII characters")
    if len(key) > _STORED_KEY:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _checked_workflow(body: SubmitV2) -> None:
    extra = sorted(body.model_extra or {})
    reserved = [name for name in extra if name in ("webhook_url", "inputs")]
    if reserved:
        raise InvalidWorkflow(f"{reserved[0]} is reserved and not accepted yet")
    if extra:
        raise Invalid(f"unknown field {extra[0][:50]!r}", fields=extra[:10])
    workflow = body.workflow
    if isinstance(workflow.get("nodes"), list) and "links" in workflow:
        raise WorkflowFormatUi(
            "this is a UI-format workflow (nodes/links): export it in API format instead"
        )
    if body.extra_data is not None:
        raise Invalid(
            "extra_data is not accepted: jobs are stored durably and credentials are "
            "never stored; configure partner-node keys on the ComfyUI servers"
        )
    try:
        check_prompt(workflow)
    except Invalid as problem:
        raise InvalidWorkflow(problem.message) from None


@routes.post(JOBS)
@requires(Role.CLIENT)
async def submit(request: web.Request) -> web.Response:
    body = await read_body(request, SubmitV2)
    _checked_workflow(body)
    jobs = _service(request)
    me = principal(request)
    new = NewJob(
        workflow="workflow",
        prompt=body.workflow,
        priority=body.priority,
        max_attempts=jobs.settings.job_max_attempts,
        idempotency_key=_idempotency_key(request),
        owner=me.key_id,
        labels=_labels(body.metadata),
    )
    try:
        job, _ = await jobs.submit(new, admin=me.admin, single_use=True)
    except Overloaded as full:
        raise QueueFull(full.message, retry_after=full.retry_after) from None
    return answer(await describe_now(request, job), status=201)


def _cursor(raw: str | None) -> tuple[datetime, str] | None:
    if raw is None:
        return None
    try:
        stamp, job_id = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return datetime.fromisoformat(stamp), str(job_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor(
            "cursor is not well-formed: pass back a page's next_cursor unchanged"
        ) from None


def _next_cursor(job: Job) -> str:
    raw = orjson.dumps([job.created_at.isoformat(), job.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _filters(request: web.Request) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in request.query.items():
        if name.startswith("metadata[") and name.endswith("]"):
            key = name[len("metadata[") : -1]
            if not _LABEL_KEY.match(key) or _FORBIDDEN.search(value) or len(value) > 256:
                raise InvalidMetadataFilter(f"metadata filter {key[:50]!r} is not a valid label")
            found[key] = value
    if len(found) > MAX_FILTERS:
        raise InvalidMetadataFilter(
            f"at most {MAX_FILTERS} metadata filters are allowed; got {len(found)}"
        )
    return found


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit is an integer from 1 to {MAX_LIMIT}")
    return limit


def _statuses(request: web.Request) -> set[str] | None:
    raw = request.query.get("status")
    if not raw:
        return None
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = wanted - set(_STATUSES)
    if unknown:
        raise Invalid(f"unknown status {sorted(unknown)[0]!r}; one of {', '.join(_STATUSES)}")
    return wanted


@routes.get(JOBS)
@requires(Role.CLIENT)
async def list_jobs(request: web.Request) -> web.Response:
    limit, filters, statuses = _limit(request), _filters(request), _statuses(request)
    below = _cursor(request.query.get("cursor"))
    jobs = _service(request)
    owner = principal(request).owner
    base, retention = origin(request), jobs.settings.job_retention
    found: list[JobSummary] = []
    scanned, more, last = 0, True, None
    batch_size = min(200, max(limit, 50))
    while len(found) < limit and scanned < _SCAN and more:
        batch = await jobs.newest(owner, limit=batch_size, below=below)
        more = len(batch) == batch_size
        for index, job in enumerate(batch):
            scanned += 1
            last = job
            below = (job.created_at, job.id)
            wanted = all(job.labels.get(k) == v for k, v in filters.items())
            if wanted and (statuses is None or v2_status(job) in statuses):
                found.append(_summary(job, base, retention))
                if len(found) == limit:
                    more = more or index < len(batch) - 1
                    break
    page = JobList(jobs=found, next_cursor=_next_cursor(last) if more and last else None)
    return json_response(
        page.model_dump(
            mode="json",
            exclude_none=False,
            exclude={"next_cursor"} if page.next_cursor is None else set(),
        )
    )


def _summary(job: Job, base: str, retention: float) -> JobSummary:
    return JobSummary(
        **describe(job, base, retention).model_dump(),
        create_time=job.created_at,
        update_time=job.updated_at,
    )


@routes.get(JOB)
@requires(Role.CLIENT)
async def get_job(request: web.Request) -> web.Response:
    return answer(await describe_now(request, await own_job(request)))


@routes.get(JOB + "/workflow")
@requires(Role.CLIENT)
async def get_workflow(request: web.Request) -> web.Response:
    job = await own_job(request)
    return answer(JobWorkflow(workflow=job.prompt, format="api"))


@routes.post(JOB + "/cancel")
@requires(Role.CLIENT)
async def cancel_job(request: web.Request) -> web.Response:
    job = await own_job(request)
    jobs = _service(request)
    try:
        job = await jobs.cancel(job.id)
    except Conflict:
        job = await jobs.get(job.id)  # it ended: cancelling is a no-op
    return answer(await describe_now(request, job))
