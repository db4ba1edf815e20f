"""Pipelines and sessions over REST: happy paths and every rejection as problem+json."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Easel, collect, png
from transport.protocol import ContentType


async def problem(
    easel: Easel,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
) -> Any:
    headers = {"Content-Type": "application/json"}
    async with easel.http.request(method, easel.url + path, data=body, headers=headers) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/problem+json"
        answer = await response.json()
        assert (answer["status"], answer["code"]) == (status, code)
        return answer


async def test_pipeline_lifecycle(easel: Easel) -> None:
    status, listing = await easel.request("GET", "/api/v1/pipelines")
    assert status == 200
    assert [p["name"] for p in listing["items"]] == ["imagefx", "passthrough"]
    status, created = await easel.post(
        "/api/v1/pipelines",
        {"name": "sim", "kind": "simulated", "replicas": 2, "options": {"cost_ms": 1}},
    )
    assert status == 201
    assert (created["kind"], created["replicas"], created["ready"]) == ("simulated", 2, True)
    status, got = await easel.request("GET", "/api/v1/pipelines/sim")
    assert status == 200
    assert "crash" in got["params_schema"]["properties"]
    status, reloaded = await easel.post("/api/v1/pipelines/sim/reload", {})
    assert (status, reloaded["generation"]) == (200, 2)
    assert (await easel.request("DELETE", "/api/v1/pipelines/sim"))[0] == 204
    assert (await easel.request("GET", "/api/v1/pipelines/sim"))[0] == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b'{"name": "x"}', 422, "invalid"),
        (b'{"name": "Bad Name!", "kind": "passthrough"}', 422, "invalid"),
        (b'{"name": "x", "kind": "nope"}', 422, "invalid"),
        (b'{"name": "x", "kind": "simulated", "options": {"cost_ms": -1}}', 422, "invalid"),
        (b'{"name": "x", "kind": "simulated", "replicas": 0}', 422, "invalid"),
        (b'{"name": "x", "kind": "simulated", "surprise": 1}', 422, "invalid"),
        (b'{"name": "passthrough", "kind": "passthrough"}', 409, "conflict"),
        (b"[]", 422, "invalid"),
    ],
)
async def test_bad_pipeline_bodies_are_rejected(
    easel: Easel, body: bytes, status: int, code: str
) -> None:
    await problem(easel, "POST", "/api/v1/pipelines", body, status, code)


async def test_pipeline_not_found_everywhere(easel: Easel) -> None:
    await problem(easel, "GET", "/api/v1/pipelines/ghost", None, 404, "not_found")
    await problem(easel, "POST", "/api/v1/pipelines/ghost/reload", b"{}", 404, "not_found")
    await problem(easel, "DELETE", "/api/v1/pipelines/ghost", None, 404, "not_found")


async def test_a_reload_that_fails_to_load_keeps_the_old_pipeline(easel: Easel) -> None:
    await easel.post("/api/v1/pipelines", {"name": "sim", "kind": "simulated"})
    body = b'{"options": {"crash_on_load": true}}'
    await problem(easel, "POST", "/api/v1/pipelines/sim/reload", body, 503, "unavailable")
    status, still = await easel.request("GET", "/api/v1/pipelines/sim")
    assert (status, still["generation"], still["ready"]) == (200, 1, True)


async def test_session_lifecycle(easel: Easel) -> None:
    created = await easel.session(pipeline="imagefx", drain="all", params={"effect": "blur"})
    assert created["ws_url"].endswith(f"/api/v1/sessions/{created['id']}/ws")
    assert created["ws_url"].startswith("ws://")
    assert len(created["token"]) >= 32
    status, listing = await easel.request("GET", "/api/v1/sessions")
    assert (status, [s["id"] for s in listing["items"]]) == (200, [created["id"]])
    assert "token" not in listing["items"][0]
    path = f"/api/v1/sessions/{created['id']}"
    status, patched = await easel.request("PATCH", path, {"params": {"radius": 3}})
    assert status == 200
    assert patched["params"] == {"effect": "blur", "radius": 3}
    assert (await easel.request("DELETE", path))[0] == 204
    assert (await easel.request("GET", path))[0] == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"nope", 400, "bad_request"),
        (b'{"pipeline": "ghost"}', 422, "invalid"),
        (b'{"drain": "some"}', 422, "invalid"),
        (b'{"params": {"effect": "melt"}, "pipeline": "imagefx"}', 422, "bad_params"),
        (b'{"params": [1]}', 422, "invalid"),
        (b'{"extra": true}', 422, "invalid"),
    ],
)
async def test_bad_session_bodies_are_rejected(
    easel: Easel, body: bytes, status: int, code: str
) -> None:
    await problem(easel, "POST", "/api/v1/sessions", body, status, code)


async def test_bad_session_patches_are_rejected(easel: Easel) -> None:
    created = await easel.session(pipeline="imagefx")
    path = f"/api/v1/sessions/{created['id']}"
    await problem(easel, "PATCH", path, b'{"params": {"effect": 5}}', 422, "bad_params")
    await problem(easel, "PATCH", path, b'{"param": {}}', 422, "invalid")
    await problem(easel, "PATCH", "/api/v1/sessions/ghost", b'{"params": {}}', 404, "not_found")
    await problem(easel, "DELETE", "/api/v1/sessions/ghost", None, 404, "not_found")


async def test_realtime_metrics_are_exposed(easel: Easel) -> None:
    client = await easel.connect(pipeline="passthrough", drain="all")
    await client.send_frame(1, ContentType.PNG, png())
    await collect(client, 1)
    async with easel.http.get(easel.url + "/metrics") as response:
        text = await response.text()
    assert 'easel_frames_total{outcome="in",pipeline="passthrough"} 1.0' in text
    assert 'easel_frames_total{outcome="out",pipeline="passthrough"} 1.0' in text
    assert "easel_ws_connections 1.0" in text
    assert 'easel_sessions{state="attached"} 1.0' in text
    assert 'easel_frame_latency_seconds_count{pipeline="passthrough"} 1.0' in text
    assert 'easel_pipeline_batch_size_count{pipeline="passthrough"} 1.0' in text
    await client.close()


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/batch"])
async def test_an_overlong_idempotency_key_header_is_a_422(easel: Easel, path: str) -> None:
    body = {"workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}, "seeds": [1]}
    if path == "/api/v1/jobs":
        del body["seeds"]
    headers = {"Idempotency-Key": "k" * 201}
    async with easel.http.post(easel.url + path, json=body, headers=headers) as response:
        assert response.status == 422, await response.text()
        assert (await response.json(content_type=None))["code"] == "invalid"
