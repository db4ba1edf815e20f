"""API-key authentication for REST and the HELLO WebSocket endpoint.

With ``EASEL_REQUIRE_API_KEY=true`` every ``/api/v1`` request needs
``Authorization: Bearer <api key>`` (or ``?token=`` for browsers), except liveness,
readiness and the API document. A session's own WebSocket also accepts that session's
token. Keys are issued with ``easel apikey create``; only their hash is stored.
Without the setting the engine trusts its network (it listens on 127.0.0.1 by default).
"""

from __future__ import annotations

from aiohttp import web

from engine.errors import Unauthorized
from transport.keys import ENGINE, STORE
from transport.problem import Handler

__all__ = ["OPEN_PATHS", "auth_middleware", "bearer_token", "require_api_key"]

OPEN_PATHS = frozenset({"/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"})


def bearer_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Bearer …`` or the ``token`` query parameter."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.query.get("token")


async def require_api_key(request: web.Request) -> None:
    """Raise ``Unauthorized`` unless the request carries a valid API key."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    await request.app[STORE].api_keys.verify(token)


def _socket(request: web.Request) -> bool:
    # WebSocket endpoints check for themselves after the upgrade (ERROR + close 1008),
    # and a session's own socket also takes that session's token
    path = request.path
    return path == "/api/v1/ws" or (path.startswith("/api/v1/sessions/") and path.endswith("/ws"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[ENGINE].settings
    path = request.path
    if (
        settings.require_api_key
        and path.startswith("/api/v1/")
        and path not in OPEN_PATHS
        and not _socket(request)
    ):
        await require_api_key(request)
    return await handler(request)
