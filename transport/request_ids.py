"""Request ids: every HTTP request gets one, its log lines carry it, and its response
says it in ``X-Request-Id``.

A caller's own ``X-Request-Id`` is kept when it is short and plain (``REQUEST_ID``:
letters, digits, ``.``, ``_``, ``:``, ``-``, at most 128 characters), so a proxy's id
follows the request through; anything else is replaced by a fresh one, never echoed.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from aiohttp import web

from engine.logcontext import log_context
from transport.problem import Handler

__all__ = [
    "REQUEST_ID",
    "REQUEST_ID_HEADER",
    "request_id_header",
    "request_id_middleware",
    "request_id_of",
]

REQUEST_ID_HEADER: Final = "X-Request-Id"
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_KEY: Final = web.RequestKey("request_id", str)


def _choose(request: web.BaseRequest) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


def request_id_of(request: web.BaseRequest) -> str | None:
    """The id ``request_id_middleware`` gave ``request`` (``None`` before it ran)."""
    return request.get(_KEY)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id and bind it for the log lines written while it is
    handled. The outermost middleware, so errors and refusals carry it too."""
    request_id = request[_KEY] = _choose(request)
    with log_context(request_id=request_id):
        return await handler(request)


async def request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response (errors, 401s, WebSocket upgrades) says
    its request's id."""
    request_id = request_id_of(request)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
