"""``/api/v1/sessions``: create, list, get, patch params, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.sessions.state import SessionState
from engine.errors import NotFound
from engine.types import DrainStrategy
from transport.auth import Role, principal, requires
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, read_body

__all__ = ["owned", "routes"]

routes = web.RouteTableDef()


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(default="passthrough", min_length=1, max_length=100)
    drain: DrainStrategy = DrainStrategy.LATEST
    params: dict[str, Any] = Field(default_factory=dict)


class PatchSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]


def _ws_url(request: web.Request, state: SessionState) -> str:
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{request.host}/api/v1/sessions/{state.id}/ws"


def owned(request: web.Request, session_id: str) -> SessionState:
    """The session if it is the caller's (any for admin); ``NotFound`` otherwise, the
    same answer as for an id that does not exist."""
    state = request.app[DOMAIN].sessions.get(session_id)
    if not principal(request).owns(state.owner):
        raise NotFound(f"no session {session_id!r}")
    return state


@routes.post("/api/v1/sessions")
@requires(Role.CLIENT)
async def create_session(request: web.Request) -> web.Response:
    body = await read_body(request, CreateSession)
    owner = principal(request).key_id
    sessions = request.app[DOMAIN].sessions
    state = await sessions.create(body.pipeline, body.drain, body.params, owner=owner)
    answer = {**state.describe(), "token": state.token, "ws_url": _ws_url(request, state)}
    return json_response(answer, status=201)


@routes.get("/api/v1/sessions")
@requires(Role.CLIENT)
async def list_sessions(request: web.Request) -> web.Response:
    caller = principal(request)
    states = request.app[DOMAIN].sessions.states()
    items = [state.describe() for state in states if caller.owns(state.owner)]
    return json_response({"items": items, "total": len(items)})


@routes.get("/api/v1/sessions/{session_id}")
@requires(Role.CLIENT)
async def get_session(request: web.Request) -> web.Response:
    return json_response(owned(request, request.match_info["session_id"]).describe())


@routes.patch("/api/v1/sessions/{session_id}")
@requires(Role.CLIENT)
async def patch_session(request: web.Request) -> web.Response:
    session_id = owned(request, request.match_info["session_id"]).id
    body = await read_body(request, PatchSession)
    sessions = request.app[DOMAIN].sessions
    await sessions.update_params(session_id, body.params)
    return json_response(sessions.get(session_id).describe())


@routes.delete("/api/v1/sessions/{session_id}")
@requires(Role.CLIENT)
async def delete_session(request: web.Request) -> web.Response:
    session_id = owned(request, request.match_info["session_id"]).id
    await request.app[DOMAIN].sessions.delete(session_id)
    return web.Response(status=204)
