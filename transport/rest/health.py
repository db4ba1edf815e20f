"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from transport.auth import Role, requires
from transport.keys import ENGINE
from transport.rest.bodies import json_response

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/api/v1/health")
@requires(Role.PUBLIC)
async def health(request: web.Request) -> web.Response:
    """Alive: the process answers and the root supervisor has not failed."""
    report = request.app[ENGINE].health()
    body = {"status": "ok" if report.alive else "failed", "detail": report.detail}
    return json_response(body, status=200 if report.alive else 503)


@routes.get("/api/v1/ready")
@requires(Role.PUBLIC)
async def ready(request: web.Request) -> web.Response:
    """Ready for a load balancer: 200 while the instance's essentials (supervision, the
    event loop, the store) work, 503 when one does not. Each pipeline is reported on
    its own, ``ok`` or ``degraded``; a degraded pipeline makes the status ``degraded``
    but the answer stays 200, since every other pipeline still serves.

    ``{"status": "ok" | "degraded" | "unavailable", "ready": bool,
    "checks": {name: {"ok", "detail"}}, "pipelines": {name: {"state", "detail"}}}``
    """
    report = await request.app[ENGINE].ready()
    body: dict[str, Any] = {
        "status": report.status,
        "ready": report.ready,
        "checks": {
            name: {"ok": c.alive, "detail": c.detail} for name, c in report.essentials.items()
        },
    }
    for group, parts in report.components.items():
        body[group] = {
            name: {"state": "ok" if part.alive else "degraded", "detail": part.detail}
            for name, part in parts.items()
        }
    return json_response(body, status=200 if report.ready else 503)


@routes.get("/metrics")
@requires(Role.METRICS)
async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[ENGINE].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
