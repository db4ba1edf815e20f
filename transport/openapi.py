"""The OpenAPI 3.1 document for ``/api/v1``, built from the same models the routes use.

Each operation is declared once here; a test checks that the document and the router
list the same routes and that every example validates against its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from actors.plugins import PipelineConfig
from engine.storage import (
    ClipPatch,
    NewApiKey,
    NewClip,
    NewProject,
    NewScene,
    ProjectPatch,
    ScenePatch,
)
from transport.auth import Role, requires
from transport.rest.apikeys import KEYS
from transport.rest.bodies import json_response
from transport.rest.comfyui import SERVER, RegisterServer
from transport.rest.jobs import JOB, SubmitBatch, SubmitJob
from transport.rest.media import ACCEPTED, MEDIA, ONE, PART
from transport.rest.pipelines import ReloadBody
from transport.rest.projects import CLIP, PROJECT, SCENE, SceneOrder
from transport.rest.sessions import CreateSession, PatchSession

__all__ = ["OPERATIONS", "Operation", "document", "routes"]

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    responses: dict[int, str]
    body: type[BaseModel] | None = None
    example: dict[str, Any] = field(default_factory=dict)
    tag: str = "engine"
    upload: dict[str, Any] | None = None
    """A request body that is not JSON: its ``content`` map, as written in the document."""


_PROBLEMS = {
    400: "Malformed body",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "Unavailable or overloaded",
}

_CORE: tuple[Operation, ...] = (
    Operation("get", "/api/v1/health", "Liveness", {200: "Alive", 503: "Root supervisor failed"}),
    Operation("get", "/api/v1/ready", "Readiness", {200: "Ready", 503: "A dependency is down"}),
    Operation("get", "/api/v1/openapi.json", "This document", {200: "OpenAPI 3.1"}),
    Operation("get", "/api/v1/pipelines", "List pipelines", {200: "Pipelines"}, tag="pipelines"),
    Operation(
        "post",
        "/api/v1/pipelines",
        "Start a pipeline",
        {201: "Started", 400: "", 409: "", 422: "", 503: ""},
        PipelineConfig,
        {"name": "sketchy", "kind": "imagefx", "replicas": 2, "options": {}},
        "pipelines",
    ),
    Operation("get", "/api/v1/pipelines/{name}", "A pipeline", {200: "", 404: ""}, tag="pipelines"),
    Operation(
        "post",
        "/api/v1/pipelines/{name}/reload",
        "Blue/green reload",
        {200: "Reloaded", 400: "", 404: "", 422: "", 503: ""},
        ReloadBody,
        {"replicas": 2},
        "pipelines",
    ),
    Operation(
        "delete", "/api/v1/pipelines/{name}", "Stop a pipeline", {204: "", 404: ""}, tag="pipelines"
    ),
    Operation(
        "post",
        "/api/v1/sessions",
        "Create a session",
        {201: "Created: id, token, ws_url", 400: "", 422: "", 503: "At the session limit"},
        CreateSession,
        {"pipeline": "imagefx", "drain": "latest", "params": {"effect": "sketch"}},
        "sessions",
    ),
    Operation("get", "/api/v1/sessions", "List sessions", {200: "Sessions"}, tag="sessions"),
    Operation(
        "get", "/api/v1/sessions/{session_id}", "A session", {200: "", 404: ""}, tag="sessions"
    ),
    Operation(
        "patch",
        "/api/v1/sessions/{session_id}",
        "Merge params",
        {200: "Updated", 400: "", 404: "", 422: ""},
        PatchSession,
        {"params": {"strength": 0.5}},
        "sessions",
    ),
    Operation(
        "delete",
        "/api/v1/sessions/{session_id}",
        "End a session",
        {204: "", 404: ""},
        tag="sessions",
    ),
    Operation(
        "get",
        "/api/v1/sessions/{session_id}/ws",
        "Realtime WebSocket (subprotocol easel.v1, see docs/protocol.md)",
        {101: "Switching protocols", 400: "Subprotocol easel.v1 not offered"},
        tag="realtime",
    ),
    Operation(
        "get",
        "/api/v1/ws",
        "Realtime WebSocket; HELLO creates or resumes a session",
        {101: "Switching protocols", 400: "Subprotocol easel.v1 not offered"},
        tag="realtime",
    ),
)


_ONE = {200: "", 404: ""}
_MADE = {201: "Created", 400: "", 404: "", 409: "", 422: ""}
_CHANGED = {200: "Changed", 400: "", 404: "", 409: "", 422: ""}
_GONE = {204: "", 404: ""}
_PAGE = {200: "A page: items, total, limit, offset", 404: "", 422: ""}

_PROJECTS: tuple[Operation, ...] = (
    Operation("get", "/api/v1/projects", "List projects", _PAGE, tag="projects"),
    Operation(
        "post",
        "/api/v1/projects",
        "Create a project",
        _MADE,
        NewProject,
        {"name": "storyboard", "description": "a short"},
        "projects",
    ),
    Operation("get", PROJECT, "A project", _ONE, tag="projects"),
    Operation(
        "patch", PROJECT, "Change a project", _CHANGED, ProjectPatch, {"name": "v2"}, "projects"
    ),
    Operation("delete", PROJECT, "Delete a project, its scenes and clips", _GONE, tag="projects"),
    Operation("get", PROJECT + "/scenes", "Scenes in order", _PAGE, tag="projects"),
    Operation(
        "post",
        PROJECT + "/scenes",
        "Append a scene",
        _MADE,
        NewScene,
        {"name": "opening"},
        "projects",
    ),
    Operation(
        "put",
        PROJECT + "/scenes/order",
        "Reorder scenes",
        _CHANGED,
        SceneOrder,
        {"scene_ids": ["s2", "s1"]},
        "projects",
    ),
    Operation("get", SCENE, "A scene", _ONE, tag="projects"),
    Operation("patch", SCENE, "Rename a scene", _CHANGED, ScenePatch, {"name": "end"}, "projects"),
    Operation("delete", SCENE, "Delete a scene and its clips", _GONE, tag="projects"),
    Operation("get", SCENE + "/clips", "Clips by start", _PAGE, tag="projects"),
    Operation(
        "post",
        SCENE + "/clips",
        "Add a clip",
        _MADE,
        NewClip,
        {"name": "pan", "start": 0.0, "duration": 2.5},
        "projects",
    ),
    Operation("get", CLIP, "A clip", _ONE, tag="projects"),
    Operation("patch", CLIP, "Change a clip", _CHANGED, ClipPatch, {"start": 1.0}, "projects"),
    Operation("delete", CLIP, "Delete a clip", _GONE, tag="projects"),
)

_MEDIA_FIELDS = "id, content_type, size, sha256, filename, created_at, url"
_IMAGE_UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": [PART],
            "properties": {
                PART: {"type": "string", "contentMediaType": "application/octet-stream"}
            },
        },
        "encoding": {PART: {"contentType": ", ".join(ACCEPTED)}},
    }
}

_MEDIA: tuple[Operation, ...] = (
    Operation(
        "post",
        MEDIA,
        "Store an image (PNG, JPEG, WebP or GIF; the type is sniffed from the bytes)",
        {
            201: f"Stored: {_MEDIA_FIELDS}; Location names it",
            400: "Not one non-empty part named file",
            413: "Larger than max_media_bytes",
            415: "Not multipart/form-data, or not a decodable image",
            422: "",
        },
        tag="media",
        upload=_IMAGE_UPLOAD,
    ),
    Operation(
        "get",
        ONE,
        "The bytes, immutable, the SHA-256 as ETag (HEAD: headers only)",
        {200: "The image", 304: "Not modified (If-None-Match)", 404: ""},
        tag="media",
    ),
    Operation("get", ONE + "/meta", "Metadata", {200: _MEDIA_FIELDS, 404: ""}, tag="media"),
    Operation("delete", ONE, "Delete the record and its bytes", _GONE, tag="media"),
)

_KEYS: tuple[Operation, ...] = (
    Operation(
        "get",
        KEYS,
        "List API keys (never their secrets)",
        {200: "A page: items {id, name, role, created_at}", 422: "Bad limit or offset"},
        tag="keys",
    ),
    Operation(
        "post",
        KEYS,
        "Issue an API key; its token is in this answer only",
        {201: "Issued: id, name, role, created_at, token", 400: "", 409: "", 422: ""},
        NewApiKey,
        {"name": "studio-app", "role": "client"},
        "keys",
    ),
    Operation(
        "delete",
        KEYS + "/{key_id}",
        "Revoke a key: it fails from the next request on",
        {204: "Revoked", 404: ""},
        tag="keys",
    ),
)


_COMFYUI: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/comfyui/servers",
        "Register a ComfyUI server",
        {201: "Registered: id, state, health", 400: "", 409: "Name or URL taken", 422: ""},
        RegisterServer,
        {"name": "gpu-1", "url": "http://10.0.0.5:8188", "max_in_flight": 2, "tags": ["sdxl"]},
        "comfyui",
    ),
    Operation("get", "/api/v1/comfyui/servers", "List servers", {200: "Servers"}, tag="comfyui"),
    Operation("get", SERVER, "A server: state and health", _ONE, tag="comfyui"),
    Operation(
        "get", SERVER + "/models", "A server's node types and model files", _ONE, tag="comfyui"
    ),
    Operation("post", SERVER + "/disable", "Send it no more jobs", _ONE, tag="comfyui"),
    Operation("post", SERVER + "/enable", "Send it jobs again", _ONE, tag="comfyui"),
    Operation("delete", SERVER, "Forget a server", {**_GONE, 409: "Jobs in flight"}, tag="comfyui"),
)

_GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "media:0187c3a2e5f04b1a9d6e2f7a8b9c0d1e"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "easel"}},
}
_SEEDED = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 20, "model": ["4", 0]}},
}
_JOBS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/jobs",
        "Submit a ComfyUI workflow (Idempotency-Key header or field: a retry returns the job)",
        {
            201: "Queued",
            200: "Already submitted with this key",
            400: "",
            422: "",
            503: "The key is at its job limit",
        },
        SubmitJob,
        {"workflow": _GRAPH, "priority": 0, "idempotency_key": "order-1234"},
        "jobs",
    ),
    Operation(
        "post",
        "/api/v1/jobs/batch",
        "Submit one job per seed",
        {201: "Queued: items, total", 400: "", 422: "", 503: "The key is at its job limit"},
        SubmitBatch,
        {"workflow": _SEEDED, "seeds": [1, 2, 3]},
        "jobs",
    ),
    Operation("get", "/api/v1/jobs", "Jobs (?status=&limit=&offset=)", _PAGE, tag="jobs"),
    Operation("get", JOB, "A job: status, attempts, progress, error, outputs", _ONE, tag="jobs"),
    Operation(
        "post",
        JOB + "/cancel",
        "Cancel: queued at once, running interrupted on its server",
        {200: "Cancelled or cancel requested", 404: "", 409: "Already ended"},
        tag="jobs",
    ),
    Operation(
        "get",
        JOB + "/events",
        "Server-Sent Events: the job on every change until it ends",
        {200: "text/event-stream", 404: ""},
        tag="jobs",
    ),
)

OPERATIONS = _CORE + _PROJECTS + _MEDIA + _KEYS + _COMFYUI + _JOBS


def _parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in op.responses.items():
        if status in _PROBLEMS:
            out[str(status)] = {
                "description": text or _PROBLEMS[status],
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        else:
            out[str(status)] = {"description": text or "OK"}
    return out


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details with a stable code",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string"},
            },
        }
    }
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method}_{op.path}".replace("/", "_")
            .replace("{", "")
            .replace("}", ""),
            "parameters": _parameters(op.path),
            "responses": _responses(op),
        }
        if op.body is not None:
            name = op.body.__name__
            schemas[name] = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{name}"},
                        "example": op.example,
                    }
                },
            }
        elif op.upload is not None:
            entry["requestBody"] = {"required": True, "content": op.upload}
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Easel", "version": "1", "description": "Realtime canvas engine API"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@routes.get("/api/v1/openapi.json")
@requires(Role.PUBLIC)
async def openapi(_request: web.Request) -> web.Response:
    return json_response(document())
