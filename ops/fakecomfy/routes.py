"""The real API's routes (each also served under ``/api``).

Handlers follow a real server's code paths closely enough to fail where it fails:
a body that is not JSON, a ``prompt`` that is not an object or ``max_items=abc``
raise, and aiohttp turns that into the plain-text 500 a real server sends.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from aiohttp import web

from ops.fakecomfy import files
from ops.fakecomfy.app import STATE, FakeState
from ops.fakecomfy.config import MODEL_FOLDERS
from ops.fakecomfy.jobs import add_job_routes
from ops.fakecomfy.queue import SENSITIVE_KEYS, QueueItem
from ops.fakecomfy.validation import validate_prompt

__all__ = ["api_routes"]

log = logging.getLogger(__name__)

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

INDEX = """<!DOCTYPE html>
<html><head><title>ComfyUI</title></head>
<body><p>A fake ComfyUI server (no frontend). See docs/comfyui-fake.md.</p></body></html>
"""

api_routes = web.RouteTableDef()


def _state(request: web.Request) -> FakeState:
    return request.app[STATE]


def _bad_request(kind: str, message: str, details: str) -> web.Response:
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return web.json_response({"error": error, "node_errors": {}}, status=400)


# -- informational ----------------------------------------------------------------------


@api_routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    return await _state(request).hub.handle(request)


@api_routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.Response(text=INDEX, content_type="text/html", headers={"Cache-Control": "no-cache"})


@api_routes.get("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    return web.json_response([])


@api_routes.get("/extensions")
async def extensions(request: web.Request) -> web.Response:
    return web.json_response([])


@api_routes.get("/features")
async def features(request: web.Request) -> web.Response:
    return web.json_response(_state(request).features)


@api_routes.get("/models")
async def model_folders(request: web.Request) -> web.Response:
    return web.json_response(list(MODEL_FOLDERS))


@api_routes.get("/models/{folder}")
async def models(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in MODEL_FOLDERS:
        return web.Response(status=404)
    return web.json_response(list(_state(request).config.models.get(folder, ())))


@api_routes.get("/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    config = _state(request).config
    system = {
        "os": sys.platform,
        "ram_total": config.ram_total,
        "ram_free": config.ram_free,
        "comfyui_version": config.comfyui_version,
        "required_frontend_version": "1.45.21",
        "installed_templates_version": "0.11.11",
        "required_templates_version": "0.11.11",
        "comfy_package_versions": [
            {"name": "comfyui-frontend-package", "installed": "1.45.21", "required": "1.45.21"},
        ],
        "python_version": sys.version,
        "pytorch_version": "none (fake)",
        "embedded_python": False,
        "deploy_environment": "local-git",
        "argv": sys.argv,
    }
    device = {
        "name": config.device_name,
        "type": config.device_type,
        "index": None,
        "vram_total": config.vram_total,
        "vram_free": config.vram_free,
        "torch_vram_total": config.vram_total,
        "torch_vram_free": config.vram_free,
    }
    return web.json_response({"system": system, "devices": [device]})


@api_routes.get("/object_info")
async def object_info(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({name: n.info(state.env) for name, n in state.registry.items()})


@api_routes.get("/object_info/{node_class}")
async def object_info_node(request: web.Request) -> web.Response:
    state = _state(request)
    name = request.match_info["node_class"]
    node = state.registry.get(name)
    return web.json_response({} if node is None else {name: node.info(state.env)})


# -- prompts -------------------------------------------------------------------------------


@api_routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(_state(request).queue.info())


@api_routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    state = _state(request)
    log.info("got prompt")
    body: Any = await request.json()
    if type(body) not in (dict, list, str):  # a real server fails on `in` with these
        raise TypeError(f"argument of type {type(body).__name__!r} is not iterable")
    if "number" in body:
        number: float = float(body["number"])
    else:
        number = state.number
        if "front" in body and body["front"]:  # noqa: RUF019 - body may be a list
            number = -number
        state.number += 1
    if "prompt" not in body:
        return _bad_request("no_prompt", "No prompt provided", "No prompt provided")
    prompt = body["prompt"]
    if not isinstance(prompt, dict):
        raise TypeError(f"prompt must be an object, not {type(prompt).__name__}")
    prompt_id = body.get("prompt_id")
    if prompt_id is None:
        prompt_id = str(uuid.uuid4())
    elif not isinstance(prompt_id, str) or not CANONICAL_UUID.fullmatch(prompt_id):
        invalid = {
            "type": "invalid_prompt_id",
            "message": "prompt_id must be a valid UUID",
            "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
            "omit it to let the server generate one",
            "extra_info": {},
        }
        return web.json_response({"error": invalid, "node_errors": {}}, status=400)
    partial = body.get("partial_execution_targets")
    ok, error, outputs, node_errors = validate_prompt(prompt, state.registry, state.env, partial)
    extra_data = body.get("extra_data", {})
    if "client_id" in body:
        extra_data["client_id"] = body["client_id"]
    if not ok:
        log.warning("invalid prompt: %s", error)
        return web.json_response({"error": error, "node_errors": node_errors}, status=400)
    sensitive = {key: extra_data.pop(key) for key in SENSITIVE_KEYS if key in extra_data}
    extra_data["create_time"] = int(time.time() * 1000)
    state.queue.put(QueueItem(number, prompt_id, prompt, extra_data, outputs, sensitive))
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})


@api_routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    running, pending = _state(request).queue.current()
    return web.json_response({"queue_running": running, "queue_pending": pending})


@api_routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    queue = _state(request).queue
    body = await request.json()
    if body.get("clear"):
        queue.wipe()
    if "delete" in body:
        for prompt_id in body["delete"]:
            queue.delete(prompt_id)
    return web.Response(status=200)


@api_routes.post("/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = {}
    prompt_id = body.get("prompt_id")
    if not prompt_id or prompt_id in state.queue.running_ids():
        state.executor.interrupt()
    return web.Response(status=200)


@api_routes.post("/free")
async def free(request: web.Request) -> web.Response:
    body = await request.json()
    body.get("unload_models", False)
    body.get("free_memory", False)
    return web.Response(status=200)


# -- history -------------------------------------------------------------------------------


@api_routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    max_items = request.query.get("max_items")
    offset = request.query.get("offset")
    history = _state(request).queue.get_history(
        max_items=None if max_items is None else int(max_items),
        offset=-1 if offset is None else int(offset),
    )
    return web.json_response(history)


@api_routes.get("/history/{prompt_id}")
async def get_history_entry(request: web.Request) -> web.Response:
    queue = _state(request).queue
    return web.json_response(queue.get_history(prompt_id=request.match_info["prompt_id"]))


@api_routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    queue = _state(request).queue
    body = await request.json()
    if body.get("clear"):
        queue.wipe_history()
    if "delete" in body:
        for prompt_id in body["delete"]:
            queue.delete_history(prompt_id)
    return web.Response(status=200)


# -- files ------------------------------------------------------------------------------------


@api_routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    return await files.upload(request, _state(request).dirs)


@api_routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    return await files.upload(request, _state(request).dirs, mask=True)


@api_routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    return await files.view(request, _state(request).dirs)


add_job_routes(api_routes, _state)
