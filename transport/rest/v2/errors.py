"""Comfy API v2 errors: ``{"error": {"code", "message", "details"}}``.

Every answer under ``/api/v2`` that is an error has this envelope, whatever raised it
(the engine's own errors, aiohttp's, auth and rate limits): :func:`envelope` turns an
engine error into it, with the v2 code for the engine's code. The errors only v2
speaks of are defined here.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from engine.errors import Conflict, EaselError, Invalid, NotFound, TooManyRequests

__all__ = [
    "PREFIX",
    "BlobNotFound",
    "HashMismatch",
    "InvalidCursor",
    "InvalidMetadataFilter",
    "InvalidWorkflow",
    "MetadataInvalid",
    "QueueFull",
    "WorkflowFormatUi",
    "envelope",
    "envelope_response",
    "is_v2",
    "v2_code",
]

PREFIX = "/api/v2"

_CODES = {
    "invalid": "invalid_request",
    "bad_params": "invalid_request",
    "bad_request": "invalid_request",
    "too_large": "payload_too_large",
    "too_many_requests": "rate_limited",
    "internal": "upstream_error",
    "unavailable": "service_unavailable",
    "overloaded": "service_unavailable",
    "conflict": "conflict",
    "forbidden_origin": "forbidden",
}
"""The v2 code of each engine code that v2 names otherwise (the rest keep theirs)."""


def v2_code(code: str) -> str:
    """The v2 name of an engine error code."""
    return _CODES.get(code, code)


def is_v2(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


class InvalidWorkflow(Invalid):
    code = "invalid_workflow"


class WorkflowFormatUi(Invalid):
    code = "workflow_format_ui"


class MetadataInvalid(Invalid):
    code = "metadata_invalid"


class InvalidMetadataFilter(Invalid):
    code = "invalid_metadata_filter"
    status = 400


class InvalidCursor(Invalid):
    code = "invalid_cursor"
    status = 400


class HashMismatch(Conflict):
    code = "hash_mismatch"


class BlobNotFound(NotFound):
    code = "blob_not_found"


class QueueFull(TooManyRequests):
    code = "queue_full"


def envelope_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    retry_after: float | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or None}}
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def envelope(error: EaselError) -> web.Response:
    """The v2 answer for an engine error (a 5xx says nothing of its cause)."""
    code = v2_code(error.code)
    details = {k: v for k, v in error.extra.items() if k != "retry_after"} or None
    message = error.message
    if error.status >= 500 and error.code == "internal":
        message, details = "an internal error occurred", None
    return envelope_response(
        error.status, code, message, details, getattr(error, "retry_after", None)
    )
