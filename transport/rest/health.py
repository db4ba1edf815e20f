"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

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
    """Ready: supervision healthy and every dependency (store, pipelines …) reachable."""
    checks = await request.app[ENGINE].ready()
    ok = all(check.alive for check in checks.values())
    body = {
        "ready": ok,
        "checks": {name: {"ok": c.alive, "detail": c.detail} for name, c in checks.items()},
    }
    return json_response(body, status=200 if ok else 503)


@routes.get("/metrics")
@requires(Role.METRICS)
async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[ENGINE].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
