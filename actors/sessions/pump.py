"""The frame pump: one task per attached session moves frames both ways.

It admits frames from the session's drain into the pipeline (up to ``max_inflight``
at once, and only when the pipeline's ``Room`` lets it in) and sends the answers back
to the connection in ``seq`` order. It sleeps on the drain's doorbell, which the
drain, the room and every pending answer ring, so there is no task, no lock and no
``asyncio.wait`` per frame. Loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from actors.pipelines.admission import Place, Room, Ticket
from actors.pipelines.handle import PipelineAnswer, PipelineHandle
from actors.plugins import FrameIn
from actors.plugins.catalog import PluginClass
from actors.sessions.deps import SessionDeps
from actors.sessions.drains import Drain, InboundFrame
from actors.sessions.messages import Connection
from actors.sessions.state import SessionState
from engine.errors import ActorError, EaselError, NotFound, PipelineError, Unavailable
from engine.types import DrainStrategy, FrameTimings

__all__ = ["FramePump"]

log = logging.getLogger(__name__)

Pending = tuple[InboundFrame, "asyncio.Future[PipelineAnswer]"]


class FramePump:
    """Drain → pipeline → connection, in order, for one attachment of one session."""

    def __init__(
        self, state: SessionState, drain: Drain, connection: Connection, deps: SessionDeps
    ) -> None:
        self.state = state
        self.drain = drain
        self.connection = connection
        self.deps = deps
        pipeline = state.pipeline
        frames, latency = deps.metrics.frames, deps.metrics.latency
        self._count_out = frames.loop_shard(pipeline, "out").inc
        self._count_errored = frames.loop_shard(pipeline, "errored").inc
        self._observe_latency = latency.loop_shard(pipeline).observe
        self._parsed: tuple[PluginClass, dict[str, Any], Any] | None = None
        self._credit = state.credit(deps.settings)
        self._waiting: Room | None = None
        """Where our ticket may be queued or granted."""
        self._finishing = False

    def finish(self) -> None:
        """Take no more frames from the drain; ``run`` returns once the frames already
        in the pipeline are answered."""
        self._finishing = True
        self.drain.bell.ring()

    async def run(self) -> None:
        """Until the drain closes, or after ``finish`` until the frames in the pipeline
        are answered. Frames still in the pipeline when it ends otherwise are
        abandoned (their futures cancelled, their room places given back)."""
        drain = self.drain
        limit = self.state.max_inflight(self.deps.settings)
        bell = drain.bell
        ticket = Ticket(bell)
        order: deque[Pending] = deque()
        self._waiting = None
        drain.admit = lambda: self._admit(order, limit, ticket)
        try:
            while not drain.closed and not (self._finishing and not order):
                self._admit(order, limit, ticket)
                if order and order[0][1].done():
                    frame, future = order.popleft()
                    # the frame waiting in the drain goes in before the answer goes out:
                    # the answer's credit lets the client send into the drain's place
                    self._admit(order, limit, ticket)
                    if self._waiting is not None:
                        # a slow client can hold up the send: while it does, our place
                        # in the queue (or one just handed to us) goes to others
                        self._waiting.withdraw(ticket)
                    await self._answer(frame, future)
                    continue
                await bell.wait()
        finally:
            drain.admit = None
            if self._waiting is not None:
                self._waiting.withdraw(ticket)
            for _, future in order:
                future.cancel()

    def _admit(self, order: deque[Pending], limit: int, ticket: Ticket) -> None:
        """Move frames from the drain into the pipeline while the session's limit and
        the pipeline's room allow."""
        drain = self.drain
        while len(order) < limit and len(drain) and not self._finishing:
            handle = self._handle()
            room = None if handle is None else handle.room
            waiting = self._waiting
            if waiting is not None and waiting is not room:
                waiting.withdraw(ticket)  # the pipeline was replaced meanwhile
            self._waiting = room
            if room is not None and not room.enter(ticket):
                return  # queued: the bell rings when our turn comes
            order.append(self._dispatch(drain.take(), handle, room))

    # --- into the pipeline -----------------------------------------------------------

    def _handle(self) -> PipelineHandle | None:
        try:
            return self.deps.pipelines.get(self.state.pipeline)
        except NotFound:
            return None  # shut down under the session: its frames get ``Unavailable``

    def _dispatch(
        self, frame: InboundFrame, handle: PipelineHandle | None, room: Room | None
    ) -> Pending:
        """Submit ``frame``; its room place goes back, and the bell rings, when the
        answer lands (at once for an answer that is already there)."""
        place = None if room is None else Place(room)
        future = self._submit(frame, handle, None if place is None else place.release)
        if future.done():
            if place is not None:
                place.release()
        else:
            if place is not None:
                # a staged kind gives the place back earlier, once ``process`` is done
                future.add_done_callback(place.release)
            future.add_done_callback(self.drain.bell.ring)
        return frame, future

    def _submit(
        self,
        frame: InboundFrame,
        handle: PipelineHandle | None,
        processed: Callable[[], None] | None,
    ) -> asyncio.Future[PipelineAnswer]:
        """Hand a frame to the pipeline without a task per frame. Errors before
        sending come back as a failed future."""
        state = self.state
        try:
            if handle is None:
                raise Unavailable(f"pipeline {state.pipeline} is not available")
            if frame.params:
                params = handle.plugin.parse_params({**state.params, **frame.params})
            else:
                params = self._session_params(handle.plugin)
            job = FrameIn(frame.payload, frame.content_type, frame.width, frame.height, params)
            return handle.submit(job, self.deps.settings.frame_timeout, processed)
        except EaselError as error:
            future: asyncio.Future[PipelineAnswer] = asyncio.get_running_loop().create_future()
            future.set_exception(error)
            return future

    def _session_params(self, plugin: PluginClass) -> Any:
        """The session's params, validated once per change rather than once per frame."""
        cached = self._parsed
        if cached is None or cached[0] is not plugin or cached[1] is not self.state.params:
            cached = (plugin, self.state.params, plugin.parse_params(self.state.params))
            self._parsed = cached
        return cached[2]

    # --- back to the client ----------------------------------------------------------

    def _outcome(self, future: asyncio.Future[PipelineAnswer]) -> PipelineAnswer | EaselError:
        """The answer, or the error to send for that frame."""
        try:
            return future.result()
        except ActorError as error:
            failed = PipelineError(f"pipeline {self.state.pipeline} failed on this frame: {error}")
            failed.__cause__ = error
            return failed
        except EaselError as error:
            return error

    async def _answer(self, frame: InboundFrame, future: asyncio.Future[PipelineAnswer]) -> None:
        """RESULT or ERROR for one frame, with its stats and metrics."""
        answer = self._outcome(future)
        if isinstance(answer, EaselError):
            await self._fail(frame, answer)
            return
        stats = self.state.stats
        superseded = self.drain.take_superseded()
        stats.superseded += superseded
        total = time.perf_counter() - frame.received
        timings = FrameTimings(answer.queue_ms, answer.pipeline_ms, total * 1000.0)
        try:
            await self.connection.send_result(
                frame.seq, answer.out, timings, superseded, self._credit_now()
            )
        except Exception:
            # e.g. a plug-in answered with a content type the protocol lacks: that
            # frame gets an internal error, the session goes on
            log.exception("session %s: answer to seq %d not sent", self.state.id, frame.seq)
            await self._fail(frame, EaselError("the answer could not be sent"))
            return
        stats.frames_out += 1
        stats.last_total_ms = timings.total_ms
        self._count_out()
        self._observe_latency(total)

    def _credit_now(self) -> int:
        """The window to grant with a RESULT. Under ``latest`` it shrinks to one while
        the pipeline is congested: the frame that would wait in the drain is better
        kept by the client, which replaces it for free and sends the newest when an
        answer comes; the pipeline stays busy with the other sessions' frames."""
        credit = self._credit
        if self.state.drain is DrainStrategy.LATEST and credit > 1:
            handle = self._handle()
            if handle is not None and handle.congested():
                return credit - 1
        return credit

    async def _fail(self, frame: InboundFrame, error: EaselError) -> None:
        self.state.stats.errors += 1
        self._count_errored()
        await self.connection.send_error(error, frame.seq)
