"""Fixtures shared by the runtime's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine import Engine, Settings


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """A started engine on its defaults, stopped after the test."""
    engine = Engine(Settings())
    await engine.start()
    yield engine
    await engine.stop()
