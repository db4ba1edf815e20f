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

Pages answer ``{"items": [...], "total", "limit", "offset"}``. A scene or clip asked
for under the wrong parent is ``not_found``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from engine.errors import Invalid, NotFound
from engine.storage import (
    Clip,
    ClipPatch,
    NewClip,
    NewProject,
    NewScene,
    Page,
    ProjectPatch,
    Scene,
    ScenePatch,
    Store,
)
from engine.storage.records import Record
from transport.keys import STORE
from transport.rest.bodies import json_response, read_body

__all__ = ["SceneOrder", "routes"]

routes = web.RouteTableDef()

PROJECT = "/api/v1/projects/{project}"
SCENE = PROJECT + "/scenes/{scene}"
CLIP = SCENE + "/clips/{clip}"


class SceneOrder(BaseModel):
    """Every scene id of the project, in the new order."""

    model_config = ConfigDict(extra="forbid")

    scene_ids: list[str]


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def _one(record: Record, status: int = 200) -> web.Response:
    return json_response(record.model_dump(mode="json"), status=status)


def _page(page: Page[Any]) -> web.Response:
    items = [item.model_dump(mode="json") for item in page.items]
    body = {"items": items, "total": page.total, "limit": page.limit, "offset": page.offset}
    return json_response(body)


def _paging(request: web.Request) -> tuple[int, int]:
    """``limit`` and ``offset`` from the query string. Raises ``Invalid``."""
    try:
        return int(request.query.get("limit", "50")), int(request.query.get("offset", "0"))
    except ValueError:
        raise Invalid("limit and offset must be integers") from None


async def _scene(request: web.Request) -> Scene:
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
async def list_projects(request: web.Request) -> web.Response:
    limit, offset = _paging(request)
    return _page(await _store(request).projects.list(limit=limit, offset=offset))


@routes.post("/api/v1/projects")
async def create_project(request: web.Request) -> web.Response:
    new = await read_body(request, NewProject)
    return _one(await _store(request).projects.create(new), 201)


@routes.get(PROJECT)
async def get_project(request: web.Request) -> web.Response:
    return _one(await _store(request).projects.get(request.match_info["project"]))


@routes.patch(PROJECT)
async def patch_project(request: web.Request) -> web.Response:
    patch = await read_body(request, ProjectPatch)
    return _one(await _store(request).projects.update(request.match_info["project"], patch))


@routes.delete(PROJECT)
async def delete_project(request: web.Request) -> web.Response:
    await _store(request).projects.delete(request.match_info["project"])
    return web.Response(status=204)


@routes.get(PROJECT + "/scenes")
async def list_scenes(request: web.Request) -> web.Response:
    store = _store(request)
    project = await store.projects.get(request.match_info["project"])
    limit, offset = _paging(request)
    return _page(await store.scenes.list(project.id, limit=limit, offset=offset))


@routes.post(PROJECT + "/scenes")
async def create_scene(request: web.Request) -> web.Response:
    new = await read_body(request, NewScene)
    return _one(await _store(request).scenes.create(request.match_info["project"], new), 201)


@routes.put(PROJECT + "/scenes/order")
async def reorder_scenes(request: web.Request) -> web.Response:
    order = await read_body(request, SceneOrder)
    scenes = await _store(request).scenes.reorder(request.match_info["project"], order.scene_ids)
    items = [scene.model_dump(mode="json") for scene in scenes]
    return json_response({"items": items, "total": len(items)})


@routes.get(SCENE)
async def get_scene(request: web.Request) -> web.Response:
    return _one(await _scene(request))


@routes.patch(SCENE)
async def patch_scene(request: web.Request) -> web.Response:
    patch = await read_body(request, ScenePatch)
    scene = await _scene(request)
    return _one(await _store(request).scenes.update(scene.id, patch))


@routes.delete(SCENE)
async def delete_scene(request: web.Request) -> web.Response:
    scene = await _scene(request)
    await _store(request).scenes.delete(scene.id)
    return web.Response(status=204)


@routes.get(SCENE + "/clips")
async def list_clips(request: web.Request) -> web.Response:
    scene = await _scene(request)
    limit, offset = _paging(request)
    page = await _store(request).clips.list(scene_id=scene.id, limit=limit, offset=offset)
    return _page(page)


@routes.post(SCENE + "/clips")
async def create_clip(request: web.Request) -> web.Response:
    new = await read_body(request, NewClip)
    scene = await _scene(request)
    return _one(await _store(request).clips.create(scene.id, new), 201)


@routes.get(CLIP)
async def get_clip(request: web.Request) -> web.Response:
    return _one(await _clip(request))


@routes.patch(CLIP)
async def patch_clip(request: web.Request) -> web.Response:
    patch = await read_body(request, ClipPatch)
    clip = await _clip(request)
    return _one(await _store(request).clips.update(clip.id, patch))


@routes.delete(CLIP)
async def delete_clip(request: web.Request) -> web.Response:
    clip = await _clip(request)
    await _store(request).clips.delete(clip.id)
    return web.Response(status=204)
