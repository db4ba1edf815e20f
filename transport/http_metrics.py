"""REST request metrics, and the session limit alerts compare against.

===========================================  =========  ===================================
``easel_http_request_duration_seconds``      histogram  from a request's routing to its
                                                        response, by ``route``, ``method``
                                                        and ``status``
``easel_sessions_max``                       gauge      the configured ``max_sessions``
===========================================  =========  ===================================

Labels stay bounded whatever clients send: ``route`` is the matched route's canonical
path (``/api/v1/sessions/{session_id}``), never the raw path, and ``unmatched`` when no
route matched (404, 405); ``method`` is a standard method or ``other``; ``status`` is
the status code sent. Only whole responses are timed: an upgraded WebSocket or another
streamed response lives as long as its client keeps it, which is no request latency
(the realtime metrics cover WebSockets).

Both are registered on the engine's registry by the middleware, on the first request
(a scrape is one, so they are always on ``/metrics``).
"""

from __future__ import annotations

import asyncio
import time
from weakref import WeakKeyDictionary

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram

from engine.engine import Engine
from transport.keys import ENGINE
from transport.problem import Handler

__all__ = ["HttpMetrics", "http_metrics", "metrics_middleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
"""0.2 s is a bound, so the 200 ms p95 alert reads an exact bucket."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class HttpMetrics:
    """The metrics of one engine's HTTP front."""

    def __init__(self, registry: CollectorRegistry, max_sessions: int) -> None:
        self.duration = Histogram(
            "easel_http_request_duration_seconds",
            "Seconds from routing to response, by route (canonical path), method and status.",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.sessions_max = Gauge(
            "easel_sessions_max", "Sessions the engine accepts at most.", registry=registry
        )
        self.sessions_max.set(max_sessions)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = UNMATCHED if resource is None else resource.canonical
        method = request.method if request.method in _METHODS else "other"
        self.duration.labels(route, method, str(status)).observe(seconds)


_installed: WeakKeyDictionary[CollectorRegistry, HttpMetrics] = WeakKeyDictionary()


def http_metrics(engine: Engine) -> HttpMetrics:
    """The engine's HTTP metrics, registered on its registry the first time."""
    metrics = _installed.get(engine.registry)
    if metrics is None:
        metrics = HttpMetrics(engine.registry, engine.settings.max_sessions)
        _installed[engine.registry] = metrics
    return metrics


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time each request; outermost, so refusals by the other middlewares count too."""
    metrics = http_metrics(request.app[ENGINE])
    start = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as error:
        metrics.observe(request, error.status, time.perf_counter() - start)
        raise
    except asyncio.CancelledError:
        raise  # the client went away: no response was sent
    except Exception:
        metrics.observe(request, 500, time.perf_counter() - start)
        raise
    if isinstance(response, web.Response):
        metrics.observe(request, response.status, time.perf_counter() - start)
    return response
