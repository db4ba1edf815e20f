"""RFC 9457 problem details: every error a REST caller sees is ``application/problem+json``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from engine.errors import EaselError, Overloaded, TooManyRequests
from transport.rest.v2.errors import envelope, envelope_response, is_v2, v2_code

__all__ = ["PROBLEM_JSON", "error_middleware", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(status: int, code: str, title: str, detail: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://easel.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    headers = {}
    retry_after = extra.get("retry_after")
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(float(retry_after))))
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_JSON, headers=headers
    )


def _from_error(error: EaselError) -> web.Response:
    extra = dict(error.extra)
    if isinstance(error, (Overloaded, TooManyRequests)):
        extra["retry_after"] = error.retry_after
    return problem_response(error.status, error.code, error.title, error.message, **extra)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn engine errors, aiohttp HTTP errors and surprises into problem+json (under
    ``/api/v2``: into Comfy API v2's error envelope)."""
    v2 = is_v2(request)
    try:
        return await handler(request)
    except EaselError as error:
        return envelope(error) if v2 else _from_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _HTTP_CODES.get(error.status, f"http_{error.status}")
        detail = error.text or error.reason
        answer = (
            envelope_response(error.status, v2_code(code), detail)
            if v2
            else problem_response(error.status, code, error.reason, detail)
        )
        if "Allow" in error.headers:  # a 405 must say which methods the path has
            answer.headers["Allow"] = error.headers["Allow"]
        return answer
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if v2:
            return envelope_response(500, "upstream_error", "an internal error occurred")
        return problem_response(500, "internal", "Internal error", "an internal error occurred")
