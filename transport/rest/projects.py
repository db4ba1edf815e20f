"""``/api/v1/projects``: projects, their ordered scenes and the clips on each scene.

=======  ===============================================================  ==========
GET      /api/v1/projects?limit=&offset=                                  a page
POST     /api/v1/projects                                                 201
GET      /api/v1/projects/{project}                                       one
PATCH    /api/v1/projects/{project}                                       changed
DELETE   /api/v1/projects/{project}  (its scenes and clips too)           204
GET      /api/v1/projects/{project}/scenes?limit=&offset=                 in order
POST     /api/v1/projects/{project}/scenes   (appended)                   201
PUT      /api/v1/projects/{project}/scenes/order  ``{"scene_ids": [..]}``  new order
GET      /api/v1/projects/{project}/scenes/{scene}                        one
PATCH    /api/v1/projects/{project}/scenes/{scene}                        changed
DELETE   /api/v1/projects/{project}/scenes/{scene}                        204
GET      /api/v1/projects/{project}/scenes/{scene}/clips?limit=&offset=   by start
POST     /api/v1/projects/{project}/scenes/{scene}/clips                  201
GET      /api/v1/projects/{project}/scenes/{scene}/clips/{clip}           one
PATCH    /api/v1/projects/{project}/scenes/{scene}/clips/{clip}           changed
DELETE   /api/v1/projects/{project}/scenes/{scene}/clips/{clip}           204
=======  ===============================================================  ==========

Pages answer ``{"items": [...], "total", "limit", "offset", "next_offset"}``. A scene or clip asked
for under the wrong parent is ``not_found``.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import NotFound
from engine.storage import (
    Clip,
    ClipPatch,
    NewClip,
    NewProject,
    NewScene,
    Page,
    Project,
    ProjectPatch,
    Scene,
    ScenePatch,
    Store,
)
from engine.storage.records import Record
from transport.auth import Role, principal, requires
from transport.keys import STORE
from transport.rest.bodies import json_response, page_response, paging, read_body

__all__ = ["SceneOrder", "routes"]

routes = web.RouteTableDef()

PROJECT = "/api/v1/projects/{project}"
SCENE = PROJECT + "/scenes/{scene}"
CLIP = SCENE + "/clips/{clip}"


class SceneOrder(BaseModel):
    """Every scene id of the project, in the new order."""

    model_config = ConfigDict(extra="forbid")

    scene_ids: list[Annotated[str, Field(max_length=32)]] = Field(max_length=10_000)


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def _one(record: Record, status: int = 200) -> web.Response:
    return json_response(record.model_dump(mode="json"), status=status)


def _page(page: Page[Any]) -> web.Response:
    items = (item.model_dump(mode="json") for item in page.items)
    return page_response(items, page.total, page.limit, page.offset)


async def _project(request: web.Request) -> Project:
    """The project in the path if it is the caller's; ``NotFound`` otherwise (the
    same answer as for an id that does not exist, so ids don't leak)."""
    project_id = request.match_info["project"]
    project = await _store(request).projects.get(project_id)
    if not principal(request).owns(project.owner):
        raise NotFound(f"projects/{project_id} not found")
    return project


async def _scene(request: web.Request) -> Scene:
    await _project(request)
    scene = await _store(request).scenes.get(request.match_info["scene"])
    if scene.project_id != request.match_info["project"]:
        raise NotFound(f"scene {scene.id} is not in project {request.match_info['project']}")
    return scene


async def _clip(request: web.Request) -> Clip:
    scene = await _scene(request)
    clip = await _store(request).clips.get(request.match_info["clip"])
    if clip.scene_id != scene.id:
        raise NotFound(f"clip {clip.id} is not in scene {scene.id}")
    return clip


@routes.get("/api/v1/projects")
@requires(Role.CLIENT)
async def list_projects(request: web.Request) -> web.Response:
    limit, offset = paging(request)
    owner = principal(request).owner
    return _page(await _store(request).projects.list(owner=owner, limit=limit, offset=offset))


@routes.post("/api/v1/projects")
@requires(Role.CLIENT)
async def create_project(request: web.Request) -> web.Response:
    new = await read_body(request, NewProject)
    owner = principal(request).key_id
    return _one(await _store(request).projects.create(new, owner=owner), 201)


@routes.get(PROJECT)
@requires(Role.CLIENT)
async def get_project(request: web.Request) -> web.Response:
    return _one(await _project(request))


@routes.patch(PROJECT)
@requires(Role.CLIENT)
async def patch_project(request: web.Request) -> web.Response:
    patch = await read_body(request, ProjectPatch)
    project = await _project(request)
    return _one(await _store(request).projects.update(project.id, patch))


@routes.delete(PROJECT)
@requires(Role.CLIENT)
async def delete_project(request: web.Request) -> web.Response:
    project = await _project(request)
    await _store(request).projects.delete(project.id)
    return web.Response(status=204)


@routes.get(PROJECT + "/scenes")
@requires(Role.CLIENT)
async def list_scenes(request: web.Request) -> web.Response:
    store = _store(request)
    project = await _project(request)
    limit, offset = paging(request)
    return _page(await store.scenes.list(project.id, limit=limit, offset=offset))


@routes.post(PROJECT + "/scenes")
@requires(Role.CLIENT)
async def create_scene(request: web.Request) -> web.Response:
    new = await read_body(request, NewScene)
    project = await _project(request)
    return _one(await _store(request).scenes.create(project.id, new), 201)


@routes.put(PROJECT + "/scenes/order")
@requires(Role.CLIENT)
async def reorder_scenes(request: web.Request) -> web.Response:
    order = await read_body(request, SceneOrder)
    project = await _project(request)
    scenes = await _store(request).scenes.reorder(project.id, order.scene_ids)
    items = [scene.model_dump(mode="json") for scene in scenes]
    return json_response({"items": items, "total": len(items)})


@routes.get(SCENE)
@requires(Role.CLIENT)
async def get_scene(request: web.Request) -> web.Response:
    return _one(await _scene(request))


@routes.patch(SCENE)
@requires(Role.CLIENT)
async def patch_scene(request: web.Request) -> web.Response:
    patch = await read_body(request, ScenePatch)
    scene = await _scene(request)
    return _one(await _store(request).scenes.update(scene.id, patch))


@routes.delete(SCENE)
@requires(Role.CLIENT)
async def delete_scene(request: web.Request) -> web.Response:
    scene = await _scene(request)
    await _store(request).scenes.delete(scene.id)
    return web.Response(status=204)


@routes.get(SCENE + "/clips")
@requires(Role.CLIENT)
async def list_clips(request: web.Request) -> web.Response:
    scene = await _scene(request)
    limit, offset = paging(request)
    page = await _store(request).clips.list(scene_id=scene.id, limit=limit, offset=offset)
    return _page(page)


@routes.post(SCENE + "/clips")
@requires(Role.CLIENT)
async def create_clip(request: web.Request) -> web.Response:
    new = await read_body(request, NewClip)
    scene = await _scene(request)
    return _one(await _store(request).clips.create(scene.id, new), 201)


@routes.get(CLIP)
@requires(Role.CLIENT)
async def get_clip(request: web.Request) -> web.Response:
    return _one(await _clip(request))


@routes.patch(CLIP)
@requires(Role.CLIENT)
async def patch_clip(request: web.Request) -> web.Response:
    patch = await read_body(request, ClipPatch)
    clip = await _clip(request)
    return _one(await _store(request).clips.update(clip.id, patch))


@routes.delete(CLIP)
@requires(Role.CLIENT)
async def delete_clip(request: web.Request) -> web.Response:
    clip = await _clip(request)
    await _store(request).clips.delete(clip.id)
    return web.Response(status=204)
