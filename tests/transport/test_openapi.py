"""The OpenAPI document matches the router, and its examples validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings
from tests.support import Easel
from transport.app import create_app
from transport.openapi import OPERATIONS, Operation, document


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    routed = {r for r in routed if r[1].startswith("/api/v1")}
    documented = {(method, path) for path, ops in document()["paths"].items() for method in ops}
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
