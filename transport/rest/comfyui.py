"""``/api/v1/comfyui/servers``: register, list, describe, models, disable, enable, delete.

A server is addressed by its id or its name.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.comfyui.server import ServerView
from transport.auth import Role, requires
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, read_body

__all__ = ["SERVER", "RegisterServer", "routes"]

routes = web.RouteTableDef()

SERVERS = "/api/v1/comfyui/servers"
SERVER = SERVERS + "/{server}"


class RegisterServer(BaseModel):
    """A ComfyUI server to add to the fleet."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(
        min_length=1, max_length=200, pattern=r"^https?://", description="Base URL, http(s)://"
    )
    max_in_flight: int = Field(default=1, ge=1, le=1024, description="Jobs on it at once")
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32
    )

    @field_validator("url")
    @classmethod
    def _base(cls, value: str) -> str:
        return value.rstrip("/")


def _models(view: ServerView) -> dict[str, Any]:
    catalog = view.catalog
    return {
        "id": view.id,
        "name": view.name,
        "fetched_at": view.catalog_at,
        "node_types": sorted(catalog.node_types),
        "models": {folder: list(files) for folder, files in catalog.models.items()},
    }


@routes.post(SERVERS)
@requires(Role.ADMIN)
async def register_server(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterServer)
    view = await request.app[DOMAIN].fleet.register(
        body.name, body.url, max_jobs=body.max_in_flight, tags=tuple(body.tags)
    )
    return json_response(view.describe(), status=201)


@routes.get(SERVERS)
@requires(Role.ADMIN)
async def list_servers(request: web.Request) -> web.Response:
    items = [view.describe() for view in request.app[DOMAIN].fleet.views()]
    return json_response({"items": items, "total": len(items)})


@routes.get(SERVER)
@requires(Role.ADMIN)
async def get_server(request: web.Request) -> web.Response:
    view = await request.app[DOMAIN].fleet.describe(request.match_info["server"])
    return json_response(view.describe())


@routes.get(SERVER + "/models")
@requires(Role.ADMIN)
async def server_models(request: web.Request) -> web.Response:
    view = await request.app[DOMAIN].fleet.describe(request.match_info["server"])
    return json_response(_models(view))


@routes.post(SERVER + "/disable")
@requires(Role.ADMIN)
async def disable_server(request: web.Request) -> web.Response:
    view = await request.app[DOMAIN].fleet.disable(request.match_info["server"])
    return json_response(view.describe())


@routes.post(SERVER + "/enable")
@requires(Role.ADMIN)
async def enable_server(request: web.Request) -> web.Response:
    view = await request.app[DOMAIN].fleet.enable(request.match_info["server"])
    return json_response(view.describe())


@routes.delete(SERVER)
@requires(Role.ADMIN)
async def delete_server(request: web.Request) -> web.Response:
    await request.app[DOMAIN].fleet.delete(request.match_info["server"])
    return web.Response(status=204)
