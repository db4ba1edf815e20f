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

__all__ = ["JOB", "JOBS", "SubmitV2", "describe", "routes", "v2_status"]

routes = web.RouteTableDef()

JOBS = PREFIX + "/jobs"
JOB = JOBS + "/{job_id}"

MAX_LABELS = 16
MAX_FILTERS = 3
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_LABEL_VALUE_BYTES = 256
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MAX_KEY = 200
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


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def expires_at(job: Job, retention: float) -> datetime:
    return job.expires_at or job.created_at + timedelta(seconds=retention)


def output(job: Job, item: JobOutput, base: str, retention: float) -> dict[str, Any]:
    """An Output object: an output is an asset, read at ``/api/v2/assets/{id}``."""
    return {
        "node_id": item.node,
        "name": item.name or item.media_id,
        "type": item.kind if item.kind in _KINDS else "file",
        "content_type": item.content_type,
        "size_bytes": item.size,
        "id": item.media_id,
        "hash": item.blake3,
        "url": f"{base}{PREFIX}/assets/{item.media_id}/content",
        "url_expires_at": _stamp(expires_at(job, retention)),
        "job_id": job.id,
    }


def progress(job: Job) -> dict[str, Any] | None:
    """The Progress snapshot (``None`` before the job runs)."""
    if job.status in (JobStatus.QUEUED, JobStatus.DISPATCHED) and not job.detail:
        return None
    detail = job.detail
    value = 1.0 if job.status is JobStatus.SUCCEEDED else min(1.0, max(0.0, job.progress))
    step, steps = detail.get("step"), detail.get("steps")
    node_class = detail.get("current_node_class")
    message = f"{node_class} {step}/{steps}" if node_class and steps else None
    return {
        "value": value,
        "nodes_done": int(detail.get("nodes_done", 0)),
        "nodes_total": int(detail.get("nodes_total", 0)),
        "current_node": detail.get("current_node"),
        "current_node_class": node_class,
        "step": step,
        "steps": steps,
        "message": message,
    }


def error(job: Job) -> dict[str, Any] | None:
    """The JobError of a job that failed or expired."""
    if job.status not in (JobStatus.FAILED, JobStatus.EXPIRED):
        return None
    if job.status is JobStatus.EXPIRED:
        return {"code": "expired", "message": job.error or "its retention ran out"}
    node_id = next(iter(job.node_errors), None)
    node = job.node_errors.get(node_id) if node_id is not None else None
    class_type = node.get("class_type") if isinstance(node, dict) else None
    return {
        "code": "invalid_workflow" if job.node_errors else "node_execution_error",
        "message": job.error or "the job failed",
        "node_id": node_id,
        "class_type": class_type if isinstance(class_type, str) else None,
        "traceback": None,
    }


def describe(
    job: Job, base: str, retention: float, queue_position: int | None = None
) -> dict[str, Any]:
    """The Job object."""
    link = f"{base}{JOBS}/{job.id}"
    return {
        "id": job.id,
        "status": v2_status(job),
        "created_at": _stamp(job.created_at),
        "started_at": _stamp(job.started_at),
        "completed_at": _stamp(job.finished_at if job.status in _ENDED else None),
        "expires_at": _stamp(expires_at(job, retention)),
        "queue_position": queue_position,
        "progress": progress(job),
        "outputs": [output(job, item, base, retention) for item in job.outputs],
        "error": error(job),
        "metrics": {
            "queue_ms": _ms(job.created_at, job.started_at),
            "execution_ms": _ms(job.started_at, job.finished_at),
        },
        "urls": {"self": link, "events": link + "/events", "cancel": link + "/cancel"},
        "metadata": dict(job.labels),
        "priority": job.priority,
        "attempts": job.attempts,
    }


async def describe_now(request: web.Request, job: Job) -> dict[str, Any]:
    """The Job object, with its place in the queue while it waits to be dispatched."""
    jobs = _service(request)
    position = None
    if job.status is JobStatus.QUEUED and not job.cancel_requested:
        position = await jobs.queue_position(job)
    elif job.status is JobStatus.DISPATCHED:
        position = 0  # sent to its server, next to run there
    return describe(job, origin(request), jobs.settings.job_retention, position)


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
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= _MAX_KEY and _KEY_TEXT.match(key)):
        raise Invalid(f"Idempotency-Key: 1 to {_MAX_KEY} printable ASCII characters")
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
    return json_response(await describe_now(request, job), status=201)


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
    found: list[dict[str, Any]] = []
    scanned, more, last = 0, True, None
    while len(found) < limit and scanned < _SCAN and more:
        batch = await jobs.newest(owner, limit=min(200, max(limit, 50)), below=below)
        more = len(batch) == min(200, max(limit, 50))
        for job in batch:
            scanned += 1
            last = job
            below = (job.created_at, job.id)
            wanted = all(job.labels.get(k) == v for k, v in filters.items())
            if wanted and (statuses is None or v2_status(job) in statuses):
                found.append(_summary(job, base, retention))
                if len(found) == limit:
                    more = more or job is not batch[-1]
                    break
    body: dict[str, Any] = {"jobs": found}
    if more and last is not None:
        body["next_cursor"] = _next_cursor(last)
    return json_response(body)


def _summary(job: Job, base: str, retention: float) -> dict[str, Any]:
    return describe(job, base, retention) | {
        "create_time": _stamp(job.created_at),
        "update_time": _stamp(job.updated_at),
    }


@routes.get(JOB)
@requires(Role.CLIENT)
async def get_job(request: web.Request) -> web.Response:
    return json_response(await describe_now(request, await own_job(request)))


@routes.get(JOB + "/workflow")
@requires(Role.CLIENT)
async def get_workflow(request: web.Request) -> web.Response:
    job = await own_job(request)
    return json_response({"workflow": job.prompt, "format": "api"})


@routes.post(JOB + "/cancel")
@requires(Role.CLIENT)
async def cancel_job(request: web.Request) -> web.Response:
    job = await own_job(request)
    jobs = _service(request)
    try:
        job = await jobs.cancel(job.id)
    except Conflict:
        job = await jobs.get(job.id)  # it ended: cancelling is a no-op
    return json_response(await describe_now(request, job))
