"""Every ``/api/v1`` operation, declared once: what it takes and what it answers.

An operation lists its success statuses and the errors only its route raises (a
conflict, an unknown pipeline, a full engine). What every route of its kind answers
is derived when the document is built (see ``_document``): 401/403/429 from the
route's declared role, 400/413/415/422 from a JSON body, 404 from an id in the path.
"""

from __future__ import annotations

from typing import Any

from actors.plugins import PipelineConfig
from engine.storage import (
    Clip,
    ClipPatch,
    NewApiKey,
    NewClip,
    NewProject,
    NewScene,
    Project,
    ProjectPatch,
    Scene,
    ScenePatch,
)
from transport.openapi import _answers as a
from transport.openapi._operation import Operation
from transport.openapi._v2 import V2
from transport.rest.apikeys import KEYS
from transport.rest.comfyui import SERVER, RegisterServer
from transport.rest.jobs import JOB, SubmitBatch, SubmitJob
from transport.rest.media import ACCEPTED, MEDIA, ONE, PART
from transport.rest.pipelines import ReloadBody
from transport.rest.projects import CLIP, PROJECT, SCENE, SceneOrder
from transport.rest.sessions import CreateSession, PatchSession

__all__ = ["OPERATIONS", "Operation"]


_ANY_JSON: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}

_CORE: tuple[Operation, ...] = (
    Operation(
        "get",
        "/api/v1/health",
        "Liveness",
        {200: "Alive", 503: "Root supervisor failed"},
        answer=a.Alive,
        answered=(503,),
    ),
    Operation(
        "get",
        "/api/v1/ready",
        "Readiness",
        {200: "Ready (status ok, or degraded: a pipeline is)", 503: "An essential is down"},
        answer=a.Readiness,
        answered=(503,),
    ),
    Operation(
        "get",
        "/api/v1/openapi.json",
        "This document",
        {200: "OpenAPI 3.1"},
        content=_ANY_JSON,
    ),
    Operation(
        "get",
        "/api/v1/pipelines",
        "List pipelines",
        {200: "Pipelines"},
        tag="pipelines",
        answer=a.PipelineList,
    ),
    Operation(
        "post",
        "/api/v1/pipelines",
        "Start a pipeline",
        {
            201: "Started",
            404: "No such kind",
            409: "A pipeline of that name runs",
            503: "",
        },
        PipelineConfig,
        {"name": "sketchy", "kind": "imagefx", "replicas": 2, "options": {}},
        "pipelines",
        answer=a.PipelineView,
    ),
    Operation(
        "get",
        "/api/v1/pipelines/{name}",
        "A pipeline",
        {200: ""},
        tag="pipelines",
        answer=a.PipelineView,
    ),
    Operation(
        "post",
        "/api/v1/pipelines/{name}/reload",
        "Blue/green reload",
        {200: "Reloaded", 503: "The new version failed to load (the old one runs on)"},
        ReloadBody,
        {"replicas": 2},
        "pipelines",
        answer=a.PipelineView,
    ),
    Operation("delete", "/api/v1/pipelines/{name}", "Stop a pipeline", {204: ""}, tag="pipelines"),
    Operation(
        "post",
        "/api/v1/sessions",
        "Create a session",
        {201: "Created: id, token, ws_url", 503: "At the engine's or the key's session limit"},
        CreateSession,
        {"pipeline": "imagefx", "drain": "latest", "params": {"effect": "sketch"}},
        "sessions",
        answer=a.NewSessionView,
    ),
    Operation(
        "get",
        "/api/v1/sessions",
        "List sessions",
        {200: "Sessions"},
        tag="sessions",
        answer=a.SessionList,
    ),
    Operation(
        "get",
        "/api/v1/sessions/{session_id}",
        "A session",
        {200: ""},
        tag="sessions",
        answer=a.SessionView,
    ),
    Operation(
        "patch",
        "/api/v1/sessions/{session_id}",
        "Merge params",
        {200: "Updated"},
        PatchSession,
        {"params": {"strength": 0.5}},
        "sessions",
        answer=a.SessionView,
    ),
    Operation(
        "delete", "/api/v1/sessions/{session_id}", "End a session", {204: ""}, tag="sessions"
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


_PAGE = {200: "A page: items, total, limit, offset", 422: "Bad limit or offset"}
_CHANGED = {200: "Changed", 409: ""}

_PROJECTS: tuple[Operation, ...] = (
    Operation(
        "get", "/api/v1/projects", "List projects", _PAGE, tag="projects", answer=a.ProjectPage
    ),
    Operation(
        "post",
        "/api/v1/projects",
        "Create a project",
        {201: "Created", 409: "Name taken"},
        NewProject,
        {"name": "storyboard", "description": "a short"},
        "projects",
        answer=Project,
    ),
    Operation("get", PROJECT, "A project", {200: ""}, tag="projects", answer=Project),
    Operation(
        "patch",
        PROJECT,
        "Change a project",
        _CHANGED,
        ProjectPatch,
        {"name": "v2"},
        "projects",
        answer=Project,
    ),
    Operation(
        "delete", PROJECT, "Delete a project, its scenes and clips", {204: ""}, tag="projects"
    ),
    Operation(
        "get", PROJECT + "/scenes", "Scenes in order", _PAGE, tag="projects", answer=a.ScenePage
    ),
    Operation(
        "post",
        PROJECT + "/scenes",
        "Append a scene",
        {201: "Created"},
        NewScene,
        {"name": "opening"},
        "projects",
        answer=Scene,
    ),
    Operation(
        "put",
        PROJECT + "/scenes/order",
        "Reorder scenes",
        {200: "Changed", 409: "Not every scene of the project, once"},
        SceneOrder,
        {"scene_ids": ["s2", "s1"]},
        "projects",
        answer=a.SceneList,
    ),
    Operation("get", SCENE, "A scene", {200: ""}, tag="projects", answer=Scene),
    Operation(
        "patch",
        SCENE,
        "Rename a scene",
        {200: "Changed"},
        ScenePatch,
        {"name": "end"},
        "projects",
        answer=Scene,
    ),
    Operation("delete", SCENE, "Delete a scene and its clips", {204: ""}, tag="projects"),
    Operation("get", SCENE + "/clips", "Clips by start", _PAGE, tag="projects", answer=a.ClipPage),
    Operation(
        "post",
        SCENE + "/clips",
        "Add a clip",
        {201: "Created"},
        NewClip,
        {"name": "pan", "start": 0.0, "duration": 2.5},
        "projects",
        answer=Clip,
    ),
    Operation("get", CLIP, "A clip", {200: ""}, tag="projects", answer=Clip),
    Operation(
        "patch",
        CLIP,
        "Change a clip",
        {200: "Changed"},
        ClipPatch,
        {"start": 1.0},
        "projects",
        answer=Clip,
    ),
    Operation("delete", CLIP, "Delete a clip", {204: ""}, tag="projects"),
)

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
_IMAGE = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ACCEPTED}

_MEDIA: tuple[Operation, ...] = (
    Operation(
        "post",
        MEDIA,
        "Store an image (PNG, JPEG, WebP or GIF; the type is sniffed from the bytes)",
        {
            201: "Stored; Location names it",
            400: "Not one non-empty part named file",
            413: "Larger than max_media_bytes",
            415: "Not multipart/form-data, or not a decodable image",
        },
        tag="media",
        upload=_IMAGE_UPLOAD,
        answer=a.MediaView,
    ),
    Operation(
        "get",
        ONE,
        "The bytes, immutable, the SHA-256 as ETag (HEAD: headers only)",
        {200: "The image", 304: "Not modified (If-None-Match)"},
        tag="media",
        content=_IMAGE,
    ),
    Operation("get", ONE + "/meta", "Metadata", {200: ""}, tag="media", answer=a.MediaView),
    Operation("delete", ONE, "Delete the record and its bytes", {204: ""}, tag="media"),
)

_KEYS: tuple[Operation, ...] = (
    Operation(
        "get",
        KEYS,
        "List API keys (never their secrets)",
        _PAGE,
        tag="keys",
        answer=a.ApiKeyPage,
    ),
    Operation(
        "post",
        KEYS,
        "Issue an API key; its token is in this answer only",
        {201: "Issued", 409: "Name taken"},
        NewApiKey,
        {"name": "studio-app", "role": "client"},
        "keys",
        answer=a.IssuedApiKey,
    ),
    Operation(
        "delete",
        KEYS + "/{key_id}",
        "Revoke a key: it fails from the next request on",
        {204: "Revoked"},
        tag="keys",
    ),
)


_COMFYUI: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/comfyui/servers",
        "Register a ComfyUI server",
        {201: "Registered: id, state, health", 409: "Name or URL taken"},
        RegisterServer,
        {"name": "gpu-1", "url": "http://10.0.0.5:8188", "max_in_flight": 2, "tags": ["sdxl"]},
        "comfyui",
        answer=a.ServerView,
    ),
    Operation(
        "get",
        "/api/v1/comfyui/servers",
        "List servers",
        {200: "Servers"},
        tag="comfyui",
        answer=a.ServerList,
    ),
    Operation(
        "get", SERVER, "A server: state and health", {200: ""}, tag="comfyui", answer=a.ServerView
    ),
    Operation(
        "get",
        SERVER + "/models",
        "A server's node types and model files",
        {200: ""},
        tag="comfyui",
        answer=a.ServerModels,
    ),
    Operation(
        "post",
        SERVER + "/disable",
        "Send it no more jobs",
        {200: ""},
        tag="comfyui",
        answer=a.ServerView,
    ),
    Operation(
        "post",
        SERVER + "/enable",
        "Send it jobs again",
        {200: ""},
        tag="comfyui",
        answer=a.ServerView,
    ),
    Operation("delete", SERVER, "Forget a server", {204: "", 409: "Jobs in flight"}, tag="comfyui"),
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
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "A retry with the same key answers the first submit's job (200)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_JOBS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/v1/jobs",
        "Submit a ComfyUI workflow (Idempotency-Key header or field: a retry returns the job)",
        {201: "Queued", 200: "Already submitted with this key"},
        SubmitJob,
        {"workflow": _GRAPH, "priority": 0, "idempotency_key": "order-1234"},
        "jobs",
        answer=a.JobWithWorkflow,
        parameters=(_IDEMPOTENCY_KEY,),
    ),
    Operation(
        "post",
        "/api/v1/jobs/batch",
        "Submit one job per seed",
        {201: "Queued: items, total"},
        SubmitBatch,
        {"workflow": _SEEDED, "seeds": [1, 2, 3]},
        "jobs",
        answer=a.JobBatch,
        parameters=(_IDEMPOTENCY_KEY,),
    ),
    Operation(
        "get",
        "/api/v1/jobs",
        "Jobs (?status=&limit=&offset=)",
        {**_PAGE, 422: "Bad status, limit or offset"},
        tag="jobs",
        answer=a.JobPage,
        parameters=(
            {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/JobStatus"}},
        ),
    ),
    Operation(
        "get",
        JOB,
        "A job: status, attempts, progress, error, outputs",
        {200: ""},
        tag="jobs",
        answer=a.JobWithWorkflow,
    ),
    Operation(
        "post",
        JOB + "/cancel",
        "Cancel: queued at once, running interrupted on its server",
        {200: "Cancelled or cancel requested", 409: "Already ended"},
        tag="jobs",
        answer=a.JobView,
    ),
    Operation(
        "get",
        JOB + "/events",
        "Server-Sent Events: the job on every change until it ends",
        {200: "A JobView as each event's data"},
        tag="jobs",
        content={"text/event-stream": {"schema": {"type": "string"}}},
    ),
)

OPERATIONS = _CORE + _PROJECTS + _MEDIA + _KEYS + _COMFYUI + _JOBS + V2
