"""The OpenAPI document matches the router, every reference in it resolves, the
statuses derived from each route hold, and its examples validate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.settings import Settings
from tests.support import Easel
from transport.app import create_app
from transport.auth import Role, role_of
from transport.openapi import OPERATIONS, Operation, document
from transport.problem import PROBLEM_JSON


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    every = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    # aiohttp adds a HEAD to each GET; a HEAD of its own (no GET beside it) is documented
    routed = {(m, p) for m, p in every if m != "head" or ("get", p) not in every}
    routed = {r for r in routed if r[1].startswith(("/api/v1", "/api/v2"))}
    documented = {
        (method, path)
        for path, ops in document()["paths"].items()
        for method in ops
        if not method.startswith("x-")
    }
    assert routed == documented


WITH_BODY = [op for op in OPERATIONS if op.body is not None]


@pytest.mark.parametrize("op", WITH_BODY, ids=[f"{op.method} {op.path}" for op in WITH_BODY])
def test_every_example_validates(op: Operation) -> None:
    assert op.body is not None
    op.body.model_validate(op.example)


async def test_the_document_is_served(easel: Easel) -> None:
    status, served = await easel.request("GET", "/api/v1/openapi.json")
    assert status == 200
    assert served["openapi"] == "3.1.0"
    assert served == document()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(root: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_in_the_document_resolves() -> None:
    served = document()
    refs = set(_refs(served))
    # a nested model is a component of its own (it once dangled inside its parent)
    assert "#/components/schemas/DrainStrategy" in refs
    dangling = []
    for ref in sorted(refs):
        try:
            _resolve(served, ref)
        except KeyError:
            dangling.append(ref)
    assert dangling == []


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document()["paths"].items():
        for method, entry in item.items():
            if not method.startswith("x-"):
                yield method, path, entry


def _roles(tmp_path: Path) -> dict[tuple[str, str], Role]:
    """Each routed operation's declared role, read off the app's router."""
    roles = {}
    for route in create_app(Settings(data_dir=tmp_path)).router.routes():
        declared = role_of(route.handler)
        if route.resource is not None and declared is not None:
            roles[(route.method.lower(), route.resource.canonical)] = declared.role
    return roles


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/api/v1/health", set()),
        ("get", "/api/v1/projects", {"401", "403", "429", "503"}),
        ("post", "/api/v1/keys", {"401", "403", "400", "408", "413", "415", "422", "503"}),
        ("delete", "/api/v1/pipelines/{name}", {"401", "403", "404", "503"}),
        ("get", "/api/v1/ws", set()),
    ],
)
def test_the_statuses_every_route_of_a_kind_answers_are_derived(
    method: str, path: str, expected: set[str]
) -> None:
    responses = set(document()["paths"][path][method]["responses"])
    (op,) = [op for op in OPERATIONS if (op.method, op.path) == (method, path)]
    assert responses - {str(status) for status in op.responses} == expected


def test_auth_statuses_and_security_follow_each_route_s_declared_role(tmp_path: Path) -> None:
    roles = _roles(tmp_path)
    for method, path, entry in _operations():
        statuses = set(entry["responses"])
        role = roles[(method, path)]
        if path.endswith("ws"):
            continue  # sockets authenticate after the upgrade: an ERROR frame, not a status
        assert ({"401", "403", "503"} <= statuses) is (role is not Role.PUBLIC), (method, path)
        assert ("429" in statuses) is (role is Role.CLIENT), (method, path)
        if role is Role.PUBLIC:
            assert entry["security"] == [], (method, path)
        else:
            assert entry["x-role"] == role.value, (method, path)


def test_every_success_answer_but_an_empty_one_has_a_schema() -> None:
    for method, path, entry in _operations():
        for status, answer in entry["responses"].items():
            if status.startswith("2") and status != "204" and method != "head":
                content = answer.get("content", {})
                assert content, (method, path, status)
                assert all("schema" in media for media in content.values()), (method, path)


def test_every_problem_is_problem_json_and_429_says_retry_after() -> None:
    served = document()
    answered = {(op.method, op.path, str(s)) for op in OPERATIONS for s in op.answered}
    assert ("get", "/api/v1/ready", "503") in answered  # the readiness body, not a problem
    for method, path, entry in _operations():
        for status, declared in entry["responses"].items():
            answer = _resolve(served, declared["$ref"]) if "$ref" in declared else declared
            if method == "head" or status == "416":
                assert "content" not in answer, (method, path, status)  # headers only
            elif int(status) >= 400 and path.startswith("/api/v2/"):  # v2's own envelope
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)
            elif int(status) >= 400 and (method, path, status) not in answered:
                assert list(answer["content"]) == [PROBLEM_JSON], (method, path, status)
            if status == "429":
                assert answer["headers"]["Retry-After"]["required"] is True


async def test_a_method_a_path_lacks_is_405_naming_those_it_has(easel: Easel) -> None:
    async with easel.http.patch(easel.url + "/api/v1/health") as response:
        assert response.status == 405
        assert response.content_type == PROBLEM_JSON
        assert set(response.headers["Allow"].split(",")) >= {"GET", "HEAD"}
        assert (await response.json(content_type=None))["code"] == "method_not_allowed"
    allow = document()["paths"]["/api/v1/health"]["x-other-methods"]
    assert allow == {"$ref": "#/components/responses/MethodNotAllowed"}
