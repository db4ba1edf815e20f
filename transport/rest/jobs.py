"""``/api/v1/jobs``: durable ComfyUI jobs.

::

    POST /api/v1/jobs                     submit (Idempotency-Key header or field)
    POST /api/v1/jobs/batch               one job per seed
    GET  /api/v1/jobs?status=&limit=&offset=   a page, in dispatch order
    GET  /api/v1/jobs/{job_id}            one job, with its workflow
    POST /api/v1/jobs/{job_id}/cancel     cancel (queued: at once; running: interrupted)
    GET  /api/v1/jobs/{job_id}/events     Server-Sent Events: the job on every change

A submit answers 201 with the new job, or 200 with the job an earlier submit with the
same idempotency key made. Each output is a media id (``GET /api/v1/media/{id}``).

Client keys: a job belongs to the key that submitted it (and so do its outputs); a
client sees, cancels and watches only its own (another key's job is ``404``, as one
that does not exist), names only its own media in a workflow, and has at most
``max_queued_jobs_per_key`` jobs unfinished (``503`` with ``Retry-After`` beyond).
Admin keys see every job.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import Invalid, NotFound
from engine.storage import Job, JobStatus, NewJob
from transport.auth import Role, principal, requires
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, page_response, read_body
from transport.rest.sse import follow

__all__ = ["JOB", "SubmitBatch", "SubmitJob", "describe", "routes"]

routes = web.RouteTableDef()

JOBS = "/api/v1/jobs"
JOB = JOBS + "/{job_id}"


_MAX_KEY = 200


class SubmitJob(BaseModel):
    """A ComfyUI workflow to run on the fleet."""

    model_config = ConfigDict(extra="forbid")

    workflow: dict[str, Any] = Field(
        description="The graph in ComfyUI's API format: node id → {class_type, inputs}. "
        'An input "media:<id>" is uploaded to the chosen server first.'
    )
    name: str = Field(default="workflow", min_length=1, max_length=200)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="lower runs first")
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    params: dict[str, Any] = Field(default_factory=dict, description="kept with the job")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=_MAX_KEY)


class SubmitBatch(SubmitJob):
    """One job per seed: every ``seed`` / ``noise_seed`` input takes each value."""

    seeds: list[int] = Field(min_length=1, max_length=1000)


def describe(job: Job, *, workflow: bool = False) -> dict[str, Any]:
    """JSON for the REST API."""

    def stamp(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    body: dict[str, Any] = {
        "id": job.id,
        "name": job.workflow,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "server_id": job.server_id,
        "node": job.lease_owner,
        "prompt_id": job.prompt_id,
        "progress": job.progress,
        "error": job.error,
        "node_errors": job.node_errors,
        "outputs": [
            {
                "media_id": o.media_id,
                "kind": o.kind,
                "node": o.node,
                "url": f"/api/v1/media/{o.media_id}",
            }
            for o in job.outputs
        ],
        "cancel_requested": job.cancel_requested,
        "idempotency_key": job.idempotency_key,
        "params": job.params,
        "created_at": stamp(job.created_at),
        "dispatched_at": stamp(job.dispatched_at),
        "started_at": stamp(job.started_at),
        "finished_at": stamp(job.finished_at),
    }
    if workflow:
        body["workflow"] = job.prompt
    return body


def _new_job(request: web.Request, body: SubmitJob) -> NewJob:
    key = request.headers.get("Idempotency-Key") or body.idempotency_key
    if key is not None and len(key) > _MAX_KEY:
        raise Invalid(f"the Idempotency-Key header has at most {_MAX_KEY} characters")
    settings = request.app[DOMAIN].jobs.settings
    return NewJob(
        workflow=body.name,
        prompt=body.workflow,
        priority=body.priority,
        max_attempts=body.max_attempts or settings.job_max_attempts,
        params=body.params,
        idempotency_key=key,
        owner=principal(request).key_id,
    )


async def _own_job(request: web.Request) -> Job:
    """The job in the path, if the caller may see it. Raises ``NotFound``."""
    job = await request.app[DOMAIN].jobs.get(request.match_info["job_id"])
    if not principal(request).owns(job.owner):
        raise NotFound(f"jobs/{job.id} not found")
    return job


@routes.post(JOBS)
@requires(Role.CLIENT)
async def submit_job(request: web.Request) -> web.Response:
    body = await read_body(request, SubmitJob)
    admin = principal(request).admin
    job, created = await request.app[DOMAIN].jobs.submit(_new_job(request, body), admin=admin)
    return json_response(describe(job, workflow=True), status=201 if created else 200)


@routes.post(JOBS + "/batch")
@requires(Role.CLIENT)
async def submit_batch(request: web.Request) -> web.Response:
    body = await read_body(request, SubmitBatch)
    admin = principal(request).admin
    jobs = await request.app[DOMAIN].jobs.submit_batch(
        _new_job(request, body), body.seeds, admin=admin
    )
    return json_response({"items": [describe(j) for j in jobs], "total": len(jobs)}, status=201)


@routes.get(JOBS)
@requires(Role.CLIENT)
async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        status = JobStatus(query["status"]) if "status" in query else None
    except ValueError:
        states = ", ".join(s.value for s in JobStatus)
        raise Invalid(f"limit and offset are integers; status one of {states}") from None
    owner = principal(request).owner
    page = await request.app[DOMAIN].jobs.list(
        status=status, owner=owner, limit=limit, offset=offset
    )
    items = (describe(job) for job in page.items)
    return page_response(items, page.total, page.limit, page.offset)


@routes.get(JOB)
@requires(Role.CLIENT)
async def get_job(request: web.Request) -> web.Response:
    return json_response(describe(await _own_job(request), workflow=True))


@routes.post(JOB + "/cancel")
@requires(Role.CLIENT)
async def cancel_job(request: web.Request) -> web.Response:
    job = await request.app[DOMAIN].jobs.cancel((await _own_job(request)).id)
    return json_response(describe(job))


HEARTBEAT = 15.0
"""Seconds of quiet after which a job's event stream sends a comment line (``:``), so
a client that left is noticed and its stream ends."""


@routes.get(JOB + "/events")
@requires(Role.CLIENT)
async def job_events(request: web.Request) -> web.StreamResponse:
    jobs = request.app[DOMAIN].jobs
    updates = jobs.watch((await _own_job(request)).id)
    first = await anext(updates)  # NotFound before the stream starts: a 404 problem
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)

    async def changed(job: Job) -> bool:
        await _send(response, job)
        return False  # the updates end when the job does

    async def quiet() -> None:
        # nothing changed for a while: a comment line finds out whether the client is
        # still there (a stream whose client left must end)
        await response.write(b": keep-alive\n\n")

    sent = False
    try:
        await _send(response, first)
        sent = True
    except ConnectionResetError:
        pass  # the client went away
    finally:
        if not sent:
            await updates.aclose()
    if sent:
        await follow(updates, HEARTBEAT, changed, quiet)
    return response


async def _send(response: web.StreamResponse, job: Job) -> None:
    data = orjson.dumps(describe(job)).decode()
    await response.write(f"id: {job.version}\nevent: {job.status.value}\ndata: {data}\n\n".encode())
