"""Fixtures for the fake ComfyUI server's tests: a fake on a free port and an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.support.fakecomfy import CHECKPOINT


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeComfy]:
    """A fake with one checkpoint in its catalog, files under ``tmp_path``."""
    async with running_fake(
        FakeConfig(base_dir=tmp_path, models={"checkpoints": [CHECKPOINT]})
    ) as f:
        yield f


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session
