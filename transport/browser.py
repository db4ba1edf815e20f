"""What keeps a browser from being turned against the engine.

- **Origins**: a request that says it comes from a page (``Origin``) must come from
  the engine's own origin or one of ``allowed_origins``; CORS preflights are answered
  for those, a foreign origin's state-changing request is refused (403), and so is
  its WebSocket upgrade. No ``Origin`` (curl, SDKs) is fine.
- **JSON only**: a body is read as JSON only if it says so (``read_body`` answers 415
  otherwise), so a cross-site ``text/plain`` POST, which needs no preflight, is refused.
- **Headers**: every response says ``nosniff``, may not be framed, and sends no referrer.
- **Access log**: credentials in query strings (``?token=``, ``?key=``) are redacted.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import unquote_plus, urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from engine.settings import Settings
from transport.keys import ENGINE
from transport.problem import Handler, problem_response
from transport.request_ids import request_id_of
from transport.rest.v2.errors import envelope_response, is_v2

__all__ = [
    "SECRET_PARAMS",
    "RedactingAccessLogger",
    "browser_middleware",
    "origin_allowed",
    "redact",
    "security_headers",
]

log = logging.getLogger(__name__)

SECRET_PARAMS: Final = frozenset({"token", "key", "api_key", "resume"})
"""Query parameters whose values are credentials: never logged."""

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_ALLOW_HEADERS: Final = "Authorization, Content-Type, X-Request-Id"
_ALLOW_METHODS: Final = "GET, HEAD, POST, PUT, PATCH, DELETE"

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def _own_origin(request: web.Request, origin: str) -> bool:
    # The Host header is what the browser connected to; a page on another site
    # can't set it to ours (its Origin would then differ from it).
    return urlsplit(origin).netloc.lower() == request.host.lower()


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    """Whether the request's ``Origin`` (if any) may use the engine."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    allowed = settings.origins
    return "*" in allowed or origin in allowed or _own_origin(request, origin)


def _cors(response: web.StreamResponse, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "Location, Retry-After, X-Request-Id"
    response.headers.add("Vary", "Origin")


@web.middleware
async def browser_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights, refuse foreign origins' writes, tag allowed ones."""
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    allowed = origin_allowed(request, request.app[ENGINE].settings)
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if not allowed and (preflight or request.method not in _SAFE_METHODS):
        log.warning("refused %s %s from origin %r", request.method, request.path, origin)
        detail = f"origin {origin!r} is not allowed"
        if is_v2(request):
            return envelope_response(403, "forbidden", detail)
        return problem_response(403, "forbidden_origin", "Origin not allowed", detail)
    if preflight:
        answer = web.Response(status=204)
        answer.headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
        answer.headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
        answer.headers["Access-Control-Max-Age"] = "600"
        _cors(answer, origin)
        return answer
    response = await handler(request)
    if allowed and not _own_origin(request, origin):
        _cors(response, origin)
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers every response carries (a page's own
    Content-Security-Policy is kept)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def redact(path_qs: str) -> str:
    """``path_qs`` with the values of credential parameters replaced by ``***``."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    parts = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        secret = unquote_plus(name).strip().lower() in SECRET_PARAMS  # as the query is read
        parts.append(f"{name}=***" if eq and secret else pair)
    return f"{path}?{'&'.join(parts)}"


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: ``remote "METHOD path" status bytes seconds``, with
    credentials in the query string redacted. The same values go on the record as
    fields (with the request's id), which the JSON log format writes out."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = redact(request.raw_path)
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6f',
            request.remote,
            request.method,
            path,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            extra={
                "request_id": request_id_of(request),
                "remote": request.remote,
                "method": request.method,
                "path": path,
                "status": response.status,
                "bytes": response.body_length,
                "duration": round(time, 6),
            },
        )
