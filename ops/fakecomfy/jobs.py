"""The newer jobs API: one view over the queue and the history.

``GET /api/jobs`` lists jobs (``pending``, ``in_progress``, ``completed``,
``failed``, ``cancelled``) with filtering, sorting and pagination;
``GET /api/jobs/{id}`` adds outputs, the history status, the workflow and the
error; ``POST /api/jobs/{id}/cancel`` dequeues or interrupts. An interrupted job
is ``cancelled`` and a runtime error ``failed``; the history alone cannot tell
them apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ops.fakecomfy.app import FakeState

__all__ = ["add_job_routes"]

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _history_status(entry: dict[str, Any]) -> str:
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return "completed"
    events = [message[0] for message in status.get("messages", [])]
    return "cancelled" if "execution_interrupted" in events else "failed"


def _outputs(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    count = 0
    preview = None
    for node_id, output in outputs.items():
        for media, items in output.items():
            if not isinstance(items, list):
                continue
            count += len(items)
            if preview is None and items and isinstance(items[0], dict):
                preview = {**items[0], "nodeId": node_id, "mediaType": media}
    return count, preview


def _jobs(state: FakeState) -> dict[str, dict[str, Any]]:
    """Every job by id, with its wire fields and (under ``_``) what the detail adds."""
    jobs: dict[str, dict[str, Any]] = {}
    for prompt_id, entry in state.queue.history.items():
        number, _, graph, extra, _ = entry["prompt"]
        messages = entry.get("status", {}).get("messages", [])
        stamps = {event: data.get("timestamp") for event, data in messages}
        count, preview = _outputs(entry.get("outputs", {}))
        status = _history_status(entry)
        jobs[prompt_id] = {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": extra.get("create_time"),
            "execution_start_time": stamps.get("execution_start"),
            "execution_end_time": messages[-1][1].get("timestamp") if messages else None,
            "outputs_count": count,
            "preview_output": preview,
            "_": {
                "outputs": entry.get("outputs", {}),
                "execution_status": entry.get("status"),
                "workflow": {"prompt": graph, "extra_data": extra},
                "error": next((d for e, d in messages if e == "execution_error"), None),
            },
        }
    running = [(item, "in_progress") for item in state.queue.running.values()]
    for item, status in [*running, *((i, "pending") for i in state.queue.pending())]:
        jobs[item.prompt_id] = {
            "id": item.prompt_id,
            "status": status,
            "priority": item.number,
            "create_time": item.extra_data.get("create_time"),
            "execution_start_time": state.queue.started.get(item.prompt_id),
            "execution_end_time": None,
            "outputs_count": 0,
            "preview_output": None,
            "_": {
                "outputs": {},
                "execution_status": None,
                "workflow": {"prompt": item.prompt, "extra_data": item.extra_data},
                "error": None,
            },
        }
    return jobs


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "_"}


def _cancel(state: FakeState, job_id: str) -> bool:
    if state.queue.delete(job_id):
        return True
    if job_id in state.queue.running_ids():
        state.executor.interrupt()
        return True
    return False


def add_job_routes(
    routes: web.RouteTableDef, get_state: Callable[[web.Request], FakeState]
) -> None:
    """Add the jobs routes to ``routes``."""

    @routes.get("/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        query = request.query
        wanted = [s for s in query.get("status", ",".join(STATUSES)).split(",") if s]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            error = (
                f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(STATUSES)}"
            )
            return web.json_response({"error": error}, status=400)
        sort_by = query.get("sort_by", "created_at")
        order = query.get("sort_order", "desc")
        if sort_by not in ("created_at", "execution_duration") or order not in ("asc", "desc"):
            error = "sort_by must be created_at or execution_duration, sort_order asc or desc"
            return web.json_response({"error": error}, status=400)
        try:
            offset = int(query.get("offset", "0"))
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        jobs = [job for job in _jobs(get_state(request)).values() if job["status"] in wanted]

        def key(job: dict[str, Any]) -> float:
            if sort_by == "created_at":
                return float(job["create_time"] or 0)
            start, end = job["execution_start_time"], job["execution_end_time"]
            return float(end - start) if start is not None and end is not None else -1.0

        jobs.sort(key=key, reverse=order == "desc")
        page = jobs[offset:] if limit is None else jobs[offset : offset + limit]
        pagination = {
            "offset": offset,
            "limit": limit,
            "total": len(jobs),
            "has_more": offset + len(page) < len(jobs),
        }
        return web.json_response({"jobs": [_public(j) for j in page], "pagination": pagination})

    @routes.post("/jobs/cancel")
    async def cancel_jobs(request: web.Request) -> web.Response:
        body = await request.json()
        ids = body.get("job_ids", [])
        invalid = [i for i in ids if not isinstance(i, str) or not UUID.fullmatch(i)]
        if invalid:
            error = {"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}
            return web.json_response(error, status=400)
        state = get_state(request)
        return web.json_response({"cancelled": [i for i in ids if _cancel(state, i)]})

    @routes.get("/jobs/{job_id}")
    async def get_job(request: web.Request) -> web.Response:
        job = _jobs(get_state(request)).get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        detail = job["_"]
        out = {
            **_public(job),
            "outputs": detail["outputs"],
            "execution_status": detail["execution_status"],
            "workflow": detail["workflow"],
        }
        if detail["error"] is not None:
            out["execution_error"] = detail["error"]
        return web.json_response(out)

    @routes.post("/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        cancelled = _cancel(get_state(request), request.match_info["job_id"])
        return web.json_response({"cancelled": cancelled})
