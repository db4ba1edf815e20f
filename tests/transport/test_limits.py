"""Limits: bodies, string fields, pages, sessions per key, pipelines and replicas, and
the per-key REST rate."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support import Easel, ServerFactory
from transport.limits import RateLimiter


async def _as(easel: Easel, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.request(method, easel.url + path, json=body) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


async def _client_key(easel: Easel) -> str:
    status, made = await easel.post("/api/v1/keys", {"name": "app", "role": "client"})
    assert status == 201
    token: str = made["token"]
    return token


async def test_an_invalid_reload_body_is_422_not_500(easel: Easel) -> None:
    for body in ({"kind": ""}, {"replicas": 0}, {"max_batch": "x"}, {"nope": 1}):
        status, problem = await easel.post("/api/v1/pipelines/passthrough/reload", body)
        assert (status, problem["code"]) == (422, "invalid"), body


async def test_pipelines_and_replicas_are_bounded(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_pipelines=3, max_replicas=2)
    sim = {"kind": "simulated", "options": {"cost_ms": 1}}
    status, problem = await easel.post("/api/v1/pipelines", {"name": "a", "replicas": 3, **sim})
    assert (status, problem["code"]) == (422, "invalid")
    assert "max_replicas" in problem["detail"]
    status, problem = await easel.post("/api/v1/pipelines/passthrough/reload", {"replicas": 3})
    assert status == 422
    assert (await easel.post("/api/v1/pipelines", {"name": "a", "replicas": 2, **sim}))[0] == 201
    status, problem = await easel.post("/api/v1/pipelines", {"name": "b", **sim})
    assert (status, problem["code"]) == (422, "invalid")  # imagefx, passthrough, a


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/projects", {"name": "x" * 201}),
        ("/api/v1/projects", {"name": "p", "description": "d" * 10_001}),
        ("/api/v1/sessions", {"pipeline": "p" * 101}),
        ("/api/v1/keys", {"name": "k" * 201}),
        ("/api/v1/pipelines/passthrough/reload", {"kind": "k" * 101}),
    ],
)
async def test_oversize_fields_are_refused(easel: Easel, path: str, body: Any) -> None:
    status, problem = await easel.post(path, body)
    assert (status, problem["code"]) == (422, "invalid")


async def test_oversize_bodies_and_pages_are_refused(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_body=4096)
    status, problem = await easel.post("/api/v1/projects", {"name": "p", "description": "d" * 5000})
    assert (status, problem["code"]) == (413, "too_large")
    for query in ("limit=501", "limit=0", "offset=-1", "limit=x"):
        status, problem = await easel.request("GET", f"/api/v1/projects?{query}")
        assert status == 422, query


async def test_sessions_per_key_are_bounded(easel_factory: ServerFactory) -> None:
    easel = await easel_factory(max_sessions_per_key=2)
    token = await _client_key(easel)
    assert (await _as(easel, token, "POST", "/api/v1/sessions", {}))[0] == 201
    status, _, made = await _as(easel, token, "POST", "/api/v1/sessions", {})
    assert status == 201
    status, headers, problem = await _as(easel, token, "POST", "/api/v1/sessions", {})
    assert (status, problem["code"]) == (503, "overloaded")
    assert int(headers["Retry-After"]) >= 1
    assert (await easel.post("/api/v1/sessions", {}))[0] == 201  # another key is not held up
    assert (await _as(easel, token, "DELETE", f"/api/v1/sessions/{made['id']}"))[0] == 204
    assert (await _as(easel, token, "POST", "/api/v1/sessions", {}))[0] == 201


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(rate_limit=0.5, rate_burst=3)
    token = await _client_key(easel)
    statuses = [(await _as(easel, token, "GET", "/api/v1/sessions"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, headers, problem = await _as(easel, token, "GET", "/api/v1/sessions")
    assert (status, problem["code"]) == (429, "too_many_requests")
    assert answer_content_is_problem(headers)
    assert int(headers["Retry-After"]) >= 1
    other = await _as(easel, await _second_key(easel), "GET", "/api/v1/sessions")
    assert other[0] == 200  # per key
    for _ in range(5):  # the operator's admin key is not limited
        assert (await easel.request("GET", "/api/v1/sessions"))[0] == 200


def answer_content_is_problem(headers: dict[str, str]) -> bool:
    return headers["Content-Type"].startswith("application/problem+json")


async def _second_key(easel: Easel) -> str:
    status, made = await easel.post("/api/v1/keys", {"name": "other", "role": "client"})
    assert status == 201
    token: str = made["token"]
    return token


def test_the_bucket_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert limiter.take("k", now=0.0) == 0
    assert limiter.take("k", now=0.0) == 0
    assert limiter.take("k", now=0.0) == pytest.approx(0.5)
    assert limiter.take("k", now=0.5) == 0
    assert limiter.take("other", now=0.5) == 0
