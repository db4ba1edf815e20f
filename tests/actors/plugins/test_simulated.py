from __future__ import annotations

import time
from typing import Any

import pytest

from actors.plugins import (
    FrameIn,
    FrameOut,
    PipelineConfig,
    Simulated,
    SimulatedCrash,
    SimulatedParams,
)
from engine.errors import PipelineError


def simulated(**options: Any) -> Simulated:
    pipeline = Simulated(PipelineConfig(name="sim", kind="simulated", options=options))
    pipeline.load()
    return pipeline


def frame(payload: bytes = b"x", **params: Any) -> FrameIn[SimulatedParams]:
    return FrameIn(payload, "image/jpeg", None, None, Simulated.parse_params(params))


def test_returns_its_inputs_after_the_cost_of_the_batch() -> None:
    pipeline = simulated(cost_ms=30, per_item_ms=10)
    frames = [frame(bytes([i])) for i in range(3)]
    started = time.monotonic()
    answers = pipeline.process(frames)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.030 + 2 * 0.010
    assert [a.payload if isinstance(a, FrameOut) else a for a in answers] == [
        f.payload for f in frames
    ]


def test_fail_param_fails_only_that_frame() -> None:
    answers = simulated(cost_ms=0).process([frame(), frame(fail=True), frame()])
    assert isinstance(answers[0], FrameOut)
    assert isinstance(answers[1], PipelineError)
    assert isinstance(answers[2], FrameOut)


def test_crash_param_breaks_the_whole_call() -> None:
    with pytest.raises(SimulatedCrash):
        simulated(cost_ms=0).process([frame(), frame(crash=True)])


def test_crash_every_raises_on_every_nth_call() -> None:
    pipeline = simulated(cost_ms=0, crash_every=3)
    outcomes = []
    for _ in range(6):
        try:
            pipeline.process([frame()])
            outcomes.append("ok")
        except SimulatedCrash:
            outcomes.append("crash")
    assert outcomes == ["ok", "ok", "crash", "ok", "ok", "crash"]


def test_load_takes_its_time_and_can_fail() -> None:
    pipeline = Simulated(PipelineConfig(name="s", kind="simulated", options={"load_ms": 20}))
    started = time.monotonic()
    pipeline.load()
    assert time.monotonic() - started >= 0.020
    with pytest.raises(SimulatedCrash):
        simulated(crash_on_load=True)


def test_empty_batch_gets_no_answers() -> None:
    assert simulated(cost_ms=0).process([]) == []
