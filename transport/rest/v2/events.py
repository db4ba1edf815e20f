"""``GET /api/v2/jobs/{id}/events``: a job's live events as Server-Sent Events.

On connect: a ``status`` event (with ``queue_position``), the latest ``progress`` and
the newest ``preview`` if there are any; then each change. A job that ends sends one
``output`` event per output, then its last ``status`` (which carries the outputs
too), and the stream ends. ``log`` events are not sent.

Beyond what Comfy API v2 promises, compatibly: every event has an ``id:``, the job's
version when it was true. A client that reconnects with ``Last-Event-ID`` gets each
change of status it missed, in order, before the stream goes on (clients that ignore
ids lose nothing). There is no cap on streams short of the connection limits. A
comment line is sent after 15 s of quiet, so a stream whose client left ends.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from actors.comfyui.jobs import JobService
from engine.storage import Job
from engine.storage.records import JobPhase
from transport.auth import Role, requires
from transport.keys import DOMAIN
from transport.rest.sse import follow
from transport.rest.v2.jobs import JOB, describe, output, own_job, progress, v2_status
from transport.rest.v2.links import origin
from transport.rest.v2.schema import Progress

__all__ = ["HEARTBEAT", "routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

HEARTBEAT = 15.0
"""Seconds of quiet after which a comment line finds out whether the client is there."""
_PREVIEW_EVERY = 0.5
"""Seconds between two previews of one stream."""


def _last_seen(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


class _Stream:
    """What one client has been sent, so that each change is sent once."""

    def __init__(self, response: web.StreamResponse, base: str, retention: float) -> None:
        self.response = response
        self.base = base
        self.retention = retention
        self.status: str | None = None
        self.progress: Progress | None = None
        self.preview: bytes | None = None
        self._sent_at = time.monotonic()

    async def send(self, event: str, data: dict[str, Any] | BaseModel, version: int) -> None:
        body = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        payload = orjson.dumps(body).decode()
        await self.write(f"id: {version}\nevent: {event}\ndata: {payload}\n\n".encode())

    async def write(self, data: bytes) -> None:
        await self.response.write(data)
        self._sent_at = time.monotonic()

    async def keep_alive(self) -> None:
        """A comment line after ``HEARTBEAT`` seconds of quiet."""
        if time.monotonic() - self._sent_at >= HEARTBEAT:
            await self.write(b": keep-alive\n\n")

    async def replay(self, job: Job, after: int) -> None:
        """Each change of status after version ``after`` but the last (sent live)."""
        missed = [phase for phase in job.history if phase.version > after][:-1]
        for phase in missed:
            await self.send("status", {"status": _phase_status(phase)}, phase.version)

    async def update(self, job: Job, position: int | None) -> bool:
        """Send what changed in ``job``; ``True`` once it has ended."""
        status = v2_status(job)
        ended = status in ("succeeded", "failed", "canceled", "expired")
        if ended:
            await self._progress(job)
            for item in job.outputs:
                await self.send("output", output(job, item, self.base, self.retention), job.version)
            outputs = describe(job, self.base, self.retention).model_dump(mode="json")["outputs"]
            await self.send(
                "status",
                {"status": status, "queue_position": None, "outputs": outputs},
                job.version,
            )
            return True
        if status != self.status:
            self.status = status
            await self.send("status", {"status": status, "queue_position": position}, job.version)
        await self._progress(job)
        return False

    async def _progress(self, job: Job) -> None:
        snapshot = progress(job)
        if snapshot is not None and snapshot != self.progress:
            self.progress = snapshot
            await self.send("progress", snapshot, job.version)

    async def show(self, jobs: JobService, job: Job) -> None:
        found = jobs.preview(job.id)
        if found is None or found[2] == self.preview:
            return
        node, content_type, image = found
        self.preview = image
        shown = node or job.detail.get("current_node") or ""
        await self.send(
            "preview",
            {
                "node_id": str(shown),
                "content_type": content_type,
                "data_base64": base64.b64encode(image).decode(),
            },
            job.version,
        )


def _phase_status(phase: JobPhase) -> str:
    ended = {"succeeded": "succeeded", "failed": "failed", "cancelled": "canceled"}
    value = phase.status.value
    if value in ended:
        return ended[value]
    if value == "expired":
        return "expired"
    if phase.cancel:
        return "canceling"
    return "running" if value == "running" else "queued"


@routes.get(JOB + "/events")
@requires(Role.CLIENT)
async def job_events(request: web.Request) -> web.StreamResponse:
    jobs: JobService = request.app[DOMAIN].jobs
    updates = jobs.watch((await own_job(request)).id)
    first = await anext(updates)  # NotFound before the stream starts
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    stream = _Stream(response, origin(request), jobs.settings.job_retention)
    latest = first

    async def changed(job: Job) -> bool:
        nonlocal latest
        latest = job
        return await stream.update(job, None)

    async def quiet() -> None:
        await stream.show(jobs, latest)
        await stream.keep_alive()

    ended = True  # unless the first events were sent and more are to come
    try:
        after = _last_seen(request)
        if after is not None:
            await stream.replay(first, after)
        position = await jobs.queue_position(first) if v2_status(first) == "queued" else None
        ended = await stream.update(first, position)
        if not ended:
            await stream.show(jobs, first)
    except ConnectionResetError:
        ended = True  # the client went away
    except Exception:  # started: the stream can only end, never become an error answer
        log.exception("job %s: event stream failed", first.id)
        ended = True
    finally:
        if ended:
            await updates.aclose()
    if not ended:
        await follow(updates, _PREVIEW_EVERY, changed, quiet)
    return response
