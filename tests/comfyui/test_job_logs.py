"""The job path's log lines say which job they are about (``job_id``)."""

from __future__ import annotations

import logging

import pytest

from engine.logcontext import ContextFilter
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import Easel, empty_graph, ended, submit


async def test_a_lost_job_is_logged_with_its_job_id(
    easel: Easel, fake: FakeComfy, caplog: pytest.LogCaptureFixture
) -> None:
    await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    fake.die_at_node(1, restart_after=0.05)
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="actors.comfyui"):
        job = await submit(easel, empty_graph(), max_attempts=3)
        await ended(easel, job["id"])
    lost = [r for r in caplog.records if "queued again" in r.getMessage()]
    assert lost, "the job was never lost"
    assert {getattr(record, "job_id", None) for record in lost} == {job["id"]}
