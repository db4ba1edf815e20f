"""Every ``/api/v2`` (Comfy API v2) operation, declared once.

Their errors are v2's envelope, not problem details (``_document`` switches on the
path); the statuses every route of a kind answers are derived the same way as v1's.
"""

from __future__ import annotations

from typing import Any

from transport.openapi._operation import Operation
from transport.rest.media import ACCEPTED
from transport.rest.v2.assets import ASSETS, FromHash
from transport.rest.v2.assets import ONE as ASSET
from transport.rest.v2.jobs import JOB, JOBS, MAX_LIMIT, SubmitV2
from transport.rest.v2.schema import Asset, JobList, JobV2, JobWorkflow

__all__ = ["V2"]

_GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "easel"}},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Single-use: any later request with the same key is 422 "
    "idempotency_key_reuse (a refused submit does not use it up)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
_LIST = (
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "The next_cursor of the page before",
        "schema": {"type": "string"},
    },
    {
        "name": "status",
        "in": "query",
        "description": "Comma-separated statuses to keep",
        "schema": {"type": "string"},
    },
    {
        "name": "metadata",
        "in": "query",
        "style": "deepObject",
        "explode": True,
        "description": "metadata[<key>]=<value>: jobs with every one of these labels (at most 3)",
        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
    },
)
_UPLOAD: dict[str, Any] = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                "content_type": {"type": "string"},
                "file_path": {"type": "string", "maxLength": 255},
                "expected_hash": {"type": "string", "description": "blake3:<hex>"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "expires_in": {"type": "integer", "minimum": 60, "maximum": 604800},
            },
        },
        "encoding": {"file": {"contentType": ", ".join(ACCEPTED)}},
    }
}
_BYTES = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ACCEPTED}
_RANGE = {
    "name": "Range",
    "in": "header",
    "description": "bytes=<first>-<last>: 206 with that part",
    "schema": {"type": "string"},
}
V2: tuple[Operation, ...] = (
    Operation(
        "post",
        JOBS,
        "Comfy API v2: submit a workflow (runs on the fleet)",
        {
            201: "Queued",
            422: "invalid_workflow (details.node_errors), workflow_format_ui, missing_asset, "
            "metadata_invalid, idempotency_key_reuse, invalid_request",
            429: "queue_full or rate_limited; Retry-After says when to come back",
        },
        SubmitV2,
        {"workflow": _GRAPH, "metadata": {"client": "acme"}},
        "comfy-api-v2",
        answer=JobV2,
        parameters=(_IDEMPOTENCY_KEY,),
    ),
    Operation(
        "get",
        JOBS,
        "Comfy API v2: jobs, newest first",
        {
            200: "A page; next_cursor when there is more",
            400: "invalid_cursor, invalid_metadata_filter",
            422: "Bad limit or status",
        },
        tag="comfy-api-v2",
        answer=JobList,
        parameters=_LIST,
    ),
    Operation("get", JOB, "Comfy API v2: a job", {200: ""}, tag="comfy-api-v2", answer=JobV2),
    Operation(
        "get",
        JOB + "/workflow",
        "Comfy API v2: the graph a job runs",
        {200: ""},
        tag="comfy-api-v2",
        answer=JobWorkflow,
    ),
    Operation(
        "post",
        JOB + "/cancel",
        "Comfy API v2: cancel (canceling until its server confirms; an ended job as it is)",
        {200: ""},
        tag="comfy-api-v2",
        answer=JobV2,
    ),
    Operation(
        "get",
        JOB + "/events",
        "Comfy API v2: Server-Sent Events (status, progress, preview, output), with ids; "
        "Last-Event-ID replays missed status changes",
        {200: "event: <type>, data: its JSON"},
        tag="comfy-api-v2",
        content={"text/event-stream": {"schema": {"type": "string"}}},
        parameters=({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},),
    ),
    Operation(
        "post",
        ASSETS,
        "Comfy API v2: upload an image (blake3-addressed; bytes the key stored are shared)",
        {
            201: "New bytes stored",
            200: "Bytes this key stored already: a new asset over them",
            409: "hash_mismatch: the bytes do not have expected_hash",
            413: "Larger than max_media_bytes",
            415: "Not a decodable PNG, JPEG, WebP or GIF",
        },
        tag="comfy-api-v2",
        upload=_UPLOAD,
        answer=Asset,
    ),
    Operation(
        "post",
        ASSETS + "/from-hash",
        "Comfy API v2: a new asset over bytes this key stored",
        {
            201: "Minted",
            200: "The same asset (same hash and file_path) already existed",
            404: "blob_not_found",
        },
        FromHash,
        {"hash": "blake3:" + "0" * 64, "file_path": "photo.png"},
        "comfy-api-v2",
        answer=Asset,
    ),
    Operation(
        "head",
        ASSETS + "/by-hash/{hash}",
        "Comfy API v2: whether this key may mint from these bytes",
        {200: "Yes", 404: "No"},
        tag="comfy-api-v2",
    ),
    Operation("get", ASSET, "Comfy API v2: an asset", {200: ""}, tag="comfy-api-v2", answer=Asset),
    Operation(
        "delete",
        ASSET,
        "Comfy API v2: delete an asset record (shared bytes stay)",
        {204: "", 409: "asset_in_use: an output of a job still kept, or an unfinished job's input"},
        tag="comfy-api-v2",
    ),
    Operation(
        "get",
        ASSET + "/content",
        "Comfy API v2: the bytes (Range: 206)",
        {200: "The bytes", 206: "The range asked for", 416: "Range not satisfiable"},
        tag="comfy-api-v2",
        content=_BYTES,
        parameters=(_RANGE,),
    ),
)
