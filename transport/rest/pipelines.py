"""``/api/v1/pipelines``: list, get, create, reload, delete."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.pipelines.handle import PipelineHandle
from actors.pipelines.replicas import hosting_of
from actors.plugins import PipelineConfig
from engine.errors import Invalid
from engine.settings import Settings
from engine.types import Hosting
from transport.auth import Role, requires
from transport.keys import DOMAIN, ENGINE
from transport.rest.bodies import json_response, read_body

__all__ = ["ReloadBody", "describe", "routes"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


class ReloadBody(BaseModel):
    """Fields to change on reload; the rest of the config is kept."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(default=None, min_length=1, max_length=100)
    replicas: int | None = Field(default=None, ge=1, le=64)
    max_batch: int | None = Field(default=None, ge=1, le=1024)
    options: dict[str, Any] | None = None
    hosting: Hosting | None = None
    resources: dict[str, float] | None = None


def _bounded(config: PipelineConfig, settings: Settings) -> None:
    if config.replicas > settings.max_replicas:
        log.warning("pipeline %s refused: %d replicas", config.name, config.replicas)
        raise Invalid(f"at most {settings.max_replicas} replicas (max_replicas)")


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
@requires(Role.CLIENT)
async def list_pipelines(request: web.Request) -> web.Response:
    registry = request.app[DOMAIN].pipelines
    items = [describe(registry.get(name)) for name in registry.names()]
    return json_response({"items": items, "total": len(items)})


@routes.post("/api/v1/pipelines")
@requires(Role.ADMIN)
async def create_pipeline(request: web.Request) -> web.Response:
    config = await read_body(request, PipelineConfig)
    registry = request.app[DOMAIN].pipelines
    settings = request.app[ENGINE].settings
    _bounded(config, settings)
    if len(registry.names()) >= settings.max_pipelines:
        log.warning("pipeline %s refused: at the limit of %d", config.name, settings.max_pipelines)
        raise Invalid(f"the engine runs its limit of {settings.max_pipelines} pipelines")
    handle = await registry.init(config, persist=True)
    return json_response(describe(handle), status=201)


@routes.get("/api/v1/pipelines/{name}")
@requires(Role.CLIENT)
async def get_pipeline(request: web.Request) -> web.Response:
    handle = request.app[DOMAIN].pipelines.get(request.match_info["name"])
    return json_response(describe(handle))


@routes.post("/api/v1/pipelines/{name}/reload")
@requires(Role.ADMIN)
async def reload_pipeline(request: web.Request) -> web.Response:
    registry = request.app[DOMAIN].pipelines
    name = request.match_info["name"]
    body = await read_body(request, ReloadBody)
    changes = body.model_dump(exclude_none=True)
    config = registry.get(name).config
    if changes:
        try:
            config = PipelineConfig.model_validate({**config.model_dump(), **changes})
        except ValidationError as error:
            raise Invalid(f"invalid reload: {error.error_count()} error(s)") from None
    _bounded(config, request.app[ENGINE].settings)
    handle = await registry.reload(name, config)
    return json_response(describe(handle))


@routes.delete("/api/v1/pipelines/{name}")
@requires(Role.ADMIN)
async def delete_pipeline(request: web.Request) -> web.Response:
    await request.app[DOMAIN].pipelines.shutdown(request.match_info["name"])
    return web.Response(status=204)
