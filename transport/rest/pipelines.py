"""``/api/v1/pipelines``: list, get, create, reload, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from actors.pipelines.handle import PipelineHandle
from actors.pipelines.replicas import hosting_of
from actors.plugins import PipelineConfig
from engine.types import Hosting
from transport.keys import DOMAIN
from transport.rest.bodies import json_response, read_body

__all__ = ["ReloadBody", "describe", "routes"]

routes = web.RouteTableDef()


class ReloadBody(BaseModel):
    """Fields to change on reload; the rest of the config is kept."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = None
    replicas: int | None = Field(default=None, ge=1, le=64)
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    options: dict[str, Any] | None = None
    hosting: Hosting | None = None
    resources: dict[str, float] | None = None


def describe(handle: PipelineHandle) -> dict[str, Any]:
    return {
        "name": handle.name,
        "kind": handle.config.kind,
        "replicas": handle.config.replicas,
        "max_batch": handle.config.max_batch,
        "options": handle.config.options,
        "hosting": hosting_of(handle.plugin, handle.config),
        "resources": handle.config.resources,
        "generation": handle.generation,
        "ready": handle.ready,
        "params_schema": handle.plugin.params_schema(),
    }


@routes.get("/api/v1/pipelines")
async def list_pipelines(request: web.Request) -> web.Response:
    registry = request.app[DOMAIN].pipelines
    items = [describe(registry.get(name)) for name in registry.names()]
    return json_response({"items": items, "total": len(items)})


@routes.post("/api/v1/pipelines")
async def create_pipeline(request: web.Request) -> web.Response:
    config = await read_body(request, PipelineConfig)
    handle = await request.app[DOMAIN].pipelines.init(config, persist=True)
    return json_response(describe(handle), status=201)


@routes.get("/api/v1/pipelines/{name}")
async def get_pipeline(request: web.Request) -> web.Response:
    handle = request.app[DOMAIN].pipelines.get(request.match_info["name"])
    return json_response(describe(handle))


@routes.post("/api/v1/pipelines/{name}/reload")
async def reload_pipeline(request: web.Request) -> web.Response:
    registry = request.app[DOMAIN].pipelines
    name = request.match_info["name"]
    body = await read_body(request, ReloadBody)
    changes = body.model_dump(exclude_none=True)
    config = registry.get(name).config
    if changes:
        config = PipelineConfig.model_validate({**config.model_dump(), **changes})
    handle = await registry.reload(name, config)
    return json_response(describe(handle))


@routes.delete("/api/v1/pipelines/{name}")
async def delete_pipeline(request: web.Request) -> web.Response:
    await request.app[DOMAIN].pipelines.shutdown(request.match_info["name"])
    return web.Response(status=204)
