"""``/api/v1/sessions``: create, list, get, patch params, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.sessions.state import SessionState
from engine.types import DrainStrategy
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, read_body

__all__ = ["routes"]

routes = web.RouteTableDef()


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(default="passthrough", min_length=1)
    drain: DrainStrategy = DrainStrategy.LATEST
    params: dict[str, Any] = Field(default_factory=dict)


class PatchSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]


def _ws_url(request: web.Request, state: SessionState) -> str:
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{request.host}/api/v1/sessions/{state.id}/ws"


@routes.post("/api/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = await read_body(request, CreateSession)
    state = await request.app[DOMAIN].sessions.create(body.pipeline, body.drain, body.params)
    answer = {**state.describe(), "token": state.token, "ws_url": _ws_url(request, state)}
    return json_response(answer, status=201)


@routes.get("/api/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    items = [state.describe() for state in request.app[DOMAIN].sessions.states()]
    return json_response({"items": items, "total": len(items)})


@routes.get("/api/v1/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    state = request.app[DOMAIN].sessions.get(request.match_info["session_id"])
    return json_response(state.describe())


@routes.patch("/api/v1/sessions/{session_id}")
async def patch_session(request: web.Request) -> web.Response:
    body = await read_body(request, PatchSession)
    sessions = request.app[DOMAIN].sessions
    session_id = request.match_info["session_id"]
    await sessions.update_params(session_id, body.params)
    return json_response(sessions.get(session_id).describe())


@routes.delete("/api/v1/sessions/{session_id}")
async def delete_session(request: web.Request) -> web.Response:
    await request.app[DOMAIN].sessions.delete(request.match_info["session_id"])
    return web.Response(status=204)
