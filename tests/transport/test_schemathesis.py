"""A bounded schemathesis run against a real server: no 5xx, and every answer keeps to
the OpenAPI document (its status, content type, headers and body schema).

Each operation is run in three passes, a few examples each, in a fixed order and with a
fixed seed (``derandomize``); runs still differ a little (the server's state does), so
a failure's report carries the request that replays it:

1. as admin, valid requests with made-up ids in the path (mostly ``404``, bodies
   validated), then invalid ones (``negative``) where there is a body, a query or a
   header to break;
2. with no key (``401``), and with a client key (``403`` on admin routes);
3. as admin, valid requests on records seeded beforehand, so success bodies are
   checked too.

Deletions run after every other operation in each pass (they only turn later
examples into ``404``s, which the document allows). Excluded, with their reasons
beside them: the WebSocket endpoints (an upgrade, not a request and an answer), a
seeded job's event stream (it streams until the job ends, which it never does here:
no ComfyUI server is reachable), and pipelines hosted in processes or on Ray.

Refusals no generated example reaches (413 past ``max_body``, 415, 429 past a key's
rate) are sent by hand and checked the same way.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from typing import Any, Final

import aiohttp
import pytest
import schemathesis
from blake3 import blake3
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import Easel, ServerFactory, png
from transport.openapi import document

pytestmark = pytest.mark.filterwarnings(
    # schemathesis's own strategies draw from ``random``; nothing here to act on
    "ignore::hypothesis.errors.HypothesisDeprecationWarning"
)

CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES: Final = 5
"""Examples per operation and pass: the whole run takes about 30 s on two busy cores."""

Caller = tuple[str, str | None]
"""Who calls, for the report, and their API key (``None``: none)."""

_EXCLUDED: Final = {
    ("GET", "/api/v1/ws"): "a WebSocket upgrade, tested in test_realtime*.py",
    ("GET", "/api/v1/sessions/{session_id}/ws"): "a WebSocket upgrade, as above",
}
_SLOW_HOSTS: Final = ("process", "ray")  # a tuple: a negative example may put a dict here
"""Pipelines not started or reloaded here: a child process per replica, or a Ray
cluster, take seconds each (``test_process_hosting.py`` and
``tests/actors/pipelines/test_ray_hosting.py`` cover them)."""
_EXCLUDED_SEEDED: Final = {
    ("GET", "/api/v1/jobs/{job_id}/events"): "streams until the job ends; it never does here",
    ("GET", "/api/v2/jobs/{job_id}/events"): "as above",
}


async def _seed(easel: Easel) -> tuple[dict[str, str], str]:
    """One record of each kind, by its path parameter's name; a client key's token."""

    async def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await easel.post(path, body)
        assert status == 201, answer
        result: dict[str, Any] = answer
        return result

    project = await made("/api/v1/projects", {"name": "seeded"})
    scenes = f"/api/v1/projects/{project['id']}/scenes"
    scene = await made(scenes, {"name": "opening"})
    clip = await made(f"{scenes}/{scene['id']}/clips", {"start": 0, "duration": 1})
    session = await made("/api/v1/sessions", {"pipeline": "passthrough"})
    key = await made("/api/v1/keys", {"name": "seeded", "role": "client"})
    server = await made("/api/v1/comfyui/servers", {"name": "seeded", "url": "http://127.0.0.1:9"})
    graph = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    job = await made("/api/v1/jobs", {"workflow": graph})
    form = aiohttp.FormData()
    image = png()
    form.add_field("file", image, filename="seed.png", content_type="image/png")
    async with easel.http.post(easel.url + "/api/v1/media", data=form) as response:
        assert response.status == 201
        media = await response.json()
    ids = {
        "project": project["id"],
        "scene": scene["id"],
        "clip": clip["id"],
        "session_id": session["id"],
        "key_id": key["id"],
        "server": server["id"],
        "job_id": job["id"],
        "media_id": media["id"],
        "asset_id": media["id"],  # media are Comfy API v2 assets
        "hash": f"blake3:{blake3(image).hexdigest()}",
        "name": "passthrough",
    }
    return ids, key["token"]


def _ordered(schema: Any) -> Iterator[Any]:
    """The operations to run, deletions last."""
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in _EXCLUDED]
    yield from sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def _breakable(operation: Any) -> bool:
    """Whether a negative example can exist: a body, query or header to break."""
    return len(operation.body) > 0 or bool(operation.query) or bool(operation.headers)


def _run(
    operation: Any,
    mode: GenerationMode,
    url: str,
    caller: Caller,
    examples: int = EXAMPLES,
    path: dict[str, str] | None = None,
) -> str | None:
    """Run one operation's examples as ``caller``; the failure, if any, as text."""
    who, key = caller
    auth = {"Authorization": f"Bearer {key}"} if key is not None else {}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        assume(not (isinstance(case.body, dict) and case.body.get("hosting") in _SLOW_HOSTS))
        response = case.call(base_url=url, headers=auth, timeout=10)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to break in this operation's request
    except (Exception, BaseExceptionGroup) as failure:  # a failed check, a timeout …
        report = "".join(traceback.format_exception(failure))[-4000:]
        return f"{operation.method.upper()} {operation.path} ({mode.value}, {who}): {report}"
    return None


def _passes(url: str, admin: Caller, client: Caller, seeded: dict[str, str]) -> list[str]:
    """Blocking: every pass over every operation; the failures."""
    schema = schemathesis.openapi.from_dict(document())
    failures: list[str | None] = []
    for operation in _ordered(schema):
        failures.append(_run(operation, GenerationMode.POSITIVE, url, admin))
        if _breakable(operation):
            failures.append(_run(operation, GenerationMode.NEGATIVE, url, admin))
    # Callers the route refuses, or not: 401 with no key, 403 for a client on an admin route.
    for operation in _ordered(schema):
        failures.append(_run(operation, GenerationMode.POSITIVE, url, ("no key", None), 1))
        failures.append(_run(operation, GenerationMode.POSITIVE, url, client, 2))
    for operation in _ordered(schema):
        names = [p.name for p in operation.path_parameters]
        if not names or (operation.method.upper(), operation.path) in _EXCLUDED_SEEDED:
            continue
        path = {name: seeded[name] for name in names}
        failures.append(_run(operation, GenerationMode.POSITIVE, url, admin, path=path))
    return [failure for failure in failures if failure is not None]


async def test_every_answer_keeps_to_the_document(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_pipelines=4, max_replicas=2)
    assert easel.admin_key is not None
    seeded, client = await _seed(easel)
    callers = ("admin", easel.admin_key), ("client", client)
    # The examples call the server over real sockets from a thread while the loop serves.
    failures = await asyncio.to_thread(_passes, easel.url, *callers, seeded)
    assert failures == [], "\n\n".join(failures)


def _refusals(url: str, client: str) -> list[int]:
    """Blocking: requests refused before their route runs, each answer checked; the
    statuses."""
    schema = schemathesis.openapi.from_dict(document())
    projects = schema["/api/v1/projects"]
    auth = {"Authorization": f"Bearer {client}"}
    cases = [
        projects["POST"].Case(body={"name": "x" * 4096}, headers=auth),  # past max_body
        projects["POST"].Case(body="a=1", media_type="text/plain", headers=auth),
        projects["GET"].Case(headers=auth),  # the third request, past a burst of two
    ]
    statuses = []
    for case in cases:
        response = case.call(base_url=url, timeout=10)
        case.validate_response(response, checks=CHECKS)
        statuses.append(response.status_code)
    return statuses


async def test_refusals_before_the_route_keep_to_the_document(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(max_body=1024, rate_limit=0.01, rate_burst=2)
    status, key = await easel.post("/api/v1/keys", {"name": "limited", "role": "client"})
    assert status == 201
    statuses = await asyncio.to_thread(_refusals, easel.url, key["token"])
    assert statuses == [413, 415, 429]
