"""``/api/v1/sessions``: create, list, get, patch params, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.drain import DrainKind
from actors.session import SessionRecord
from transport.keys import SERVICES
from transport.rest.bodies import json_response, read_body

__all__ = ["routes"]

routes = web.RouteTableDef()


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(default="passthrough", min_length=1)
    drain: DrainKind = DrainKind.LATEST
    params: dict[str, Any] = Field(default_factory=dict)


class PatchSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]


def _ws_url(request: web.Request, record: SessionRecord) -> str:
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{request.host}/api/v1/sessions/{record.id}/ws"


@routes.post("/api/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    body = await read_body(request, CreateSession)
    record = await request.app[SERVICES].sessions.create(body.pipeline, body.drain, body.params)
    answer = {**record.describe(), "token": record.token, "ws_url": _ws_url(request, record)}
    return json_response(answer, status=201)


@routes.get("/api/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    items = [record.describe() for record in request.app[SERVICES].sessions.records()]
    return json_response({"items": items, "total": len(items)})


@routes.get("/api/v1/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    record = request.app[SERVICES].sessions.get(request.match_info["session_id"])
    return json_response(record.describe())


@routes.patch("/api/v1/sessions/{session_id}")
async def patch_session(request: web.Request) -> web.Response:
    body = await read_body(request, PatchSession)
    sessions = request.app[SERVICES].sessions
    session_id = request.match_info["session_id"]
    await sessions.update_params(session_id, body.params)
    return json_response(sessions.get(session_id).describe())


@routes.delete("/api/v1/sessions/{session_id}")
async def delete_session(request: web.Request) -> web.Response:
    await request.app[SERVICES].sessions.delete(request.match_info["session_id"])
    return web.Response(status=204)
