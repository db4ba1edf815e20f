"""Real servers for the storage suite, and a store per backend for the contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from engine.storage import Store, open_store
from tests.support import settings_for

BACKENDS = ("sqlite", "postgresql", "mongodb")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, registry: CollectorRegistry
) -> AsyncIterator[Store]:
    store = await open_store(await settings_for(request.param, tmp_path, request), registry)
    try:
        yield store
    finally:
        await store.close()
