"""A fake client connection, frames, and the session's narrow dependencies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from actors.plugins import FrameOut
from actors.sessions.deps import SessionDeps
from actors.sessions.drains import Drain, InboundFrame, make_drain
from actors.sessions.pump import FramePump
from actors.sessions.state import SessionState
from engine.errors import EaselError
from engine.types import DrainStrategy, FrameTimings
from tests.actors.pipelines.kit import Rig

WAIT = 5.0


def frame(seq: int, params: dict[str, Any] | None = None, payload: bytes = b"png") -> InboundFrame:
    return InboundFrame(seq, "image/png", None, None, payload, params, time.perf_counter())


@dataclass(frozen=True)
class Sent:
    seq: int
    out: FrameOut
    timings: FrameTimings
    superseded: int


class FakeConnection:
    """Records what the session sends its client, in order (``log``).

    ``hold_results()`` makes ``send_result`` wait (a slow client) until
    ``release_results()``; events named in ``held_events`` wait until ``release_events()``.
    ``failing_results`` are seqs whose ``send_result`` raises; ``broken_errors`` makes
    every ``send_error`` raise.
    """

    def __init__(
        self,
        *,
        failing_results: Collection[int] = (),
        broken_errors: bool = False,
        held_events: Collection[str] = (),
    ) -> None:
        self.results: list[Sent] = []
        self.errors: list[tuple[EaselError, int | None, bool]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.closes: list[tuple[int, str]] = []
        self.log: list[str] = []
        self.sending: list[int] = []
        """Seqs whose ``send_result`` started (it may still be waiting)."""
        self.credits: list[int | None] = []
        """The ``credit`` of each ``send_result``, in call order."""
        self.failing_results = set(failing_results)
        self.broken_errors = broken_errors
        self.held_events = set(held_events)
        self._results_open = asyncio.Event()
        self._results_open.set()
        self._events_open = asyncio.Event()

    def hold_results(self) -> None:
        self._results_open.clear()

    def release_results(self) -> None:
        self._results_open.set()

    def release_events(self) -> None:
        self._events_open.set()

    @property
    def seqs(self) -> list[int]:
        return [sent.seq for sent in self.results]

    @property
    def error_seqs(self) -> list[int | None]:
        return [seq for _, seq, _ in self.errors]

    @property
    def answer_order(self) -> list[int]:
        """Seqs of RESULTs and ERRORs together, in the order they were sent."""
        order = []
        for entry in self.log:
            kind, _, seq = entry.partition(":")
            if kind in ("result", "error") and seq != "None":
                order.append(int(seq))
        return order

    @property
    def answered(self) -> int:
        return len(self.results) + len(self.errors)

    async def send_result(
        self,
        seq: int,
        out: FrameOut,
        timings: FrameTimings,
        superseded: int,
        credit: int | None = None,
    ) -> None:
        self.credits.append(credit)
        self.sending.append(seq)
        await self._results_open.wait()
        if seq in self.failing_results:
            raise ValueError(f"seq {seq} cannot be encoded")
        self.results.append(Sent(seq, out, timings, superseded))
        self.log.append(f"result:{seq}")

    async def send_error(
        self, error: EaselError, seq: int | None = None, fatal: bool = False
    ) -> None:
        if self.broken_errors:
            raise ConnectionResetError("the socket is gone")
        self.errors.append((error, seq, fatal))
        self.log.append(f"error:{seq}")

    async def send_event(self, name: str, data: dict[str, Any]) -> None:
        if name in self.held_events:
            await self._events_open.wait()
        self.events.append((name, data))
        self.log.append(f"event:{name}")

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.log.append(f"close:{code}")


@dataclass
class Recorder:
    """The callbacks of ``SessionDeps``, recorded."""

    attached: list[int] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)

    def attached_changed(self, delta: int) -> None:
        self.attached.append(delta)

    def session_ended(self, session_id: str) -> None:
        self.ended.append(session_id)


def deps_for(rig: Rig, recorder: Recorder) -> SessionDeps:
    return SessionDeps(
        rig.settings, rig.metrics, rig.pipelines, recorder.attached_changed, recorder.session_ended
    )


def new_state(
    pipeline: str,
    drain: DrainStrategy = DrainStrategy.ALL,
    params: dict[str, Any] | None = None,
    session_id: str = "s1",
) -> SessionState:
    return SessionState(
        id=session_id,
        token="secret",
        pipeline=pipeline,
        drain=drain,
        params=dict(params or {}),
        created_at=time.time(),
    )


@dataclass
class Pumping:
    pump: FramePump
    drain: Drain
    task: asyncio.Task[None]

    async def feed(self, *frames: InboundFrame) -> None:
        for each in frames:
            await self.drain.put(each)

    async def stop(self) -> None:
        """Close the drain and wait for ``run`` to end."""
        self.drain.close()
        await asyncio.wait_for(self.task, WAIT)


@asynccontextmanager
async def pumping(
    rig: Rig,
    state: SessionState,
    connection: FakeConnection,
    recorder: Recorder | None = None,
    drain: Drain | None = None,
) -> AsyncIterator[Pumping]:
    """A ``FramePump`` running over a fresh drain for ``state``; stopped after."""
    if drain is None:  # not `or`: an empty drain is falsy
        drain = make_drain(state.drain, rig.settings.drain_capacity)
    pump = FramePump(state, drain, connection, deps_for(rig, recorder or Recorder()))
    task = asyncio.get_running_loop().create_task(pump.run())
    running = Pumping(pump, drain, task)
    try:
        yield running
    finally:
        connection.release_results()
        if not task.done():
            await running.stop()
