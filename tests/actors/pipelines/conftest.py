"""Fixtures for the pipeline tests: a started engine with a pipeline service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.actors.pipelines.kit import Rig, migrated_store_files, open_rig


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with open_rig() as started:
        yield started


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite store, made once and copied by each test."""
    return migrated_store_files(tmp_path_factory.mktemp("store-template"))
