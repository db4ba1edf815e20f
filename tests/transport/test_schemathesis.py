"""A bounded schemathesis run against a real server: no 5xx, and every answer keeps to
the OpenAPI document (its status, content type, headers and body schema).

Each operation is run three ways, a few examples each, in a fixed order and with a
fixed seed (``derandomize``), so a failure repeats:

1. valid requests with made-up ids in the path (mostly ``404``, bodies validated);
2. invalid requests (``negative``), for operations with a body or a query to break;
3. valid requests on records seeded beforehand, so success bodies are checked too.

Deletions run after every other operation in each pass (they only turn later
examples into ``404``s, which the document allows). Excluded, with their reasons in
``_EXCLUDED``: the WebSocket endpoints (an upgrade, not a request and an answer) and
a seeded job's event stream (it streams until the job ends, which it never does
here: no ComfyUI server is reachable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Final

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
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
"""Examples per operation and pass: about 30 s for the whole run here."""

_EXCLUDED: Final = {
    ("GET", "/api/v1/ws"): "a WebSocket upgrade, tested in test_realtime*.py",
    ("GET", "/api/v1/sessions/{session_id}/ws"): "a WebSocket upgrade, as above",
}
_EXCLUDED_SEEDED: Final = {
    ("GET", "/api/v1/jobs/{job_id}/events"): "streams until the job ends; it never does here",
}


async def _seed(easel: Easel) -> dict[str, str]:
    """One record of each kind, by its path parameter's name."""

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
    form.add_field("file", png(), filename="seed.png", content_type="image/png")
    async with easel.http.post(easel.url + "/api/v1/media", data=form) as response:
        assert response.status == 201
        media = await response.json()
    return {
        "project": project["id"],
        "scene": scene["id"],
        "clip": clip["id"],
        "session_id": session["id"],
        "key_id": key["id"],
        "server": server["id"],
        "job_id": job["id"],
        "media_id": media["id"],
        "name": "passthrough",
    }


def _ordered(schema: Any) -> Iterator[Any]:
    """The operations to run, deletions last."""
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in _EXCLUDED]
    yield from sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def _breakable(operation: Any) -> bool:
    """Whether a negative example can exist: a body, query or header to break."""
    return len(operation.body) > 0 or bool(operation.query) or bool(operation.headers)


def _run(operation: Any, mode: GenerationMode, url: str, key: str, **path: str) -> str | None:
    """Run one operation's examples; the failure, if any, as text."""
    auth = {"Authorization": f"Bearer {key}"}

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path or None))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def examples(case: Any) -> None:
        response = case.call(base_url=url, headers=auth, timeout=10)
        case.validate_response(response, checks=CHECKS)

    try:
        examples()
    except Unsatisfiable:
        return None  # nothing to break in this operation's request
    except (AssertionError, BaseExceptionGroup) as failure:
        return f"{operation.method.upper()} {operation.path} ({mode.value}): {failure}"
    return None


def _passes(url: str, key: str, seeded: dict[str, str]) -> list[str]:
    """Blocking: every pass over every operation; the failures."""
    schema = schemathesis.openapi.from_dict(document())
    failures: list[str | None] = []
    for operation in _ordered(schema):
        failures.append(_run(operation, GenerationMode.POSITIVE, url, key))
        if _breakable(operation):
            failures.append(_run(operation, GenerationMode.NEGATIVE, url, key))
    for operation in _ordered(schema):
        names = [p.name for p in operation.path_parameters]
        if not names or (operation.method.upper(), operation.path) in _EXCLUDED_SEEDED:
            continue
        path = {name: seeded[name] for name in names}
        failures.append(_run(operation, GenerationMode.POSITIVE, url, key, **path))
    return [failure for failure in failures if failure is not None]


async def test_every_answer_keeps_to_the_document(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_pipelines=4, max_replicas=2)
    assert easel.admin_key is not None
    seeded = await _seed(easel)
    started = time.monotonic()
    # The examples call the server over real sockets from a thread while the loop serves.
    failures = await asyncio.to_thread(_passes, easel.url, easel.admin_key, seeded)
    assert failures == [], "\n\n".join(failures)
    assert time.monotonic() - started < 100  # bounded: a few examples an operation
