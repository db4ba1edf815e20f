"""The session actor: one per canvas session, on the loop.

A session owns its params, its pipeline binding, its drain strategy, its stats and
its one attached connection. Frames do not go through the session's mailbox: the
WebSocket reader puts them into the session's drain (the session's frame mailbox,
with the drain's overflow rule) through the ``Attachment`` the session hands out, and
the session's pump moves them to the pipeline and the answers back, in order.

What a user handed us lives in ``SessionRecord``, which outlives incarnations: a
crashed session closes its socket (1011), restarts with the same params and can be
resumed with its token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from actors.drain import Drain, DrainKind, InboundFrame, make_drain
from actors.pipeline import PipelineAnswer, PipelineHandle, Room, Ticket
from actors.pipelines import FrameIn, FrameOut
from actors.pipelines.catalog import PipelineKind
from engine.actor import LoopActor
from engine.doorbell import Doorbell
from engine.errors import (
    ActorError,
    Conflict,
    EaselError,
    Invalid,
    NotFound,
    PipelineError,
)
from engine.ref import ActorState
from engine.settings import Settings

if TYPE_CHECKING:
    from actors.session_registry import SessionRegistry

__all__ = [
    "Attach",
    "Attachment",
    "Call",
    "Close",
    "Connection",
    "Describe",
    "Detach",
    "SessionActor",
    "SessionRecord",
    "SessionStats",
    "UpdateParams",
]

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The session's view of its client; implemented by the transport. Loop only."""

    async def send_result(
        self, seq: int, out: FrameOut, timings: dict[str, float], superseded: int
    ) -> None: ...

    async def send_error(
        self, error: EaselError, seq: int | None = None, fatal: bool = False
    ) -> None: ...

    async def send_event(self, name: str, data: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class SessionStats:
    frames_in: int = 0
    frames_out: int = 0
    superseded: int = 0
    errors: int = 0
    last_total_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "superseded": self.superseded,
            "errors": self.errors,
            "last_total_ms": self.last_total_ms,
        }


@dataclass
class SessionRecord:
    """Everything about a session that must survive its actor's restarts."""

    id: str
    token: str
    pipeline: str
    drain: DrainKind
    params: dict[str, Any]
    created_at: float
    stats: SessionStats = field(default_factory=SessionStats)
    attached: bool = False

    def max_inflight(self, settings: Settings) -> int:
        """How many of this session's frames may be in its pipeline at once."""
        return settings.max_inflight if self.drain is DrainKind.ALL else 1

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "drain": str(self.drain),
            "params": dict(self.params),
            "attached": self.attached,
            "created_at": self.created_at,
            "stats": self.stats.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Attach:
    connection: Connection


@dataclass(frozen=True, slots=True)
class Detach:
    connection: Connection


@dataclass(frozen=True, slots=True)
class UpdateParams:
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Describe:
    pass


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    code: int = 1000
    reason: str = "session closed"


@dataclass(frozen=True, slots=True)
class _Expire:
    detached_at: float


@dataclass(frozen=True, slots=True)
class _TaskFailed:
    error: BaseException | None
    incarnation: int


class Attachment:
    """The connection's port into its session: where the reader puts frames."""

    def __init__(self, record: SessionRecord, drain: Drain, on_in: Any) -> None:
        self.record = record
        self.drain = drain
        self._on_in = on_in

    async def submit(self, frame: InboundFrame) -> None:
        """Hand a frame to the session; under ``all`` this waits while the drain is full."""
        self.record.stats.frames_in += 1
        self._on_in()
        await self.drain.put(frame)


Pending = tuple[InboundFrame, asyncio.Future[PipelineAnswer]]
Answerer = Callable[[InboundFrame, asyncio.Future[PipelineAnswer]], Awaitable[None]]

Message = Attach | Detach | UpdateParams | Describe | Call | Close | _Expire | _TaskFailed


class SessionActor(LoopActor[Message, Any]):
    kind = "session"

    def __init__(self, record: SessionRecord, registry: SessionRegistry) -> None:
        self.record = record
        self.registry = registry
        self.connection: Connection | None = None
        self._drain: Drain | None = None
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._closing: Close | None = None
        self._parsed: tuple[PipelineKind, dict[str, Any], Any] | None = None

    async def on_start(self) -> None:
        self.record.attached = False
        self._schedule_expiry()

    async def receive(self, message: Message) -> Any:
        if isinstance(message, Attach):
            return self._attach(message.connection)
        if isinstance(message, Detach):
            if message.connection is self.connection:
                self._detach()
            return None
        if isinstance(message, UpdateParams):
            return self._update_params(message.params)
        if isinstance(message, Describe):
            return self.record.describe()
        if isinstance(message, Call):
            return self._call(message)
        if isinstance(message, Close):
            self._closing = message
            self.context.stop()
            return None
        if isinstance(message, _Expire):
            if self.connection is None and message.detached_at == self._detached_at:
                log.info("session %s expired after %.1fs idle", self.record.id, self._idle)
                self._closing = Close(1000, "idle timeout")
                self.context.stop()
            return None
        if isinstance(message, _TaskFailed):
            if message.incarnation != self.context.incarnation:
                return None  # a task of an earlier incarnation
            raise RuntimeError("the session's frame pump failed") from message.error
        raise Invalid(f"unknown session message {type(message).__name__}")

    # --- attach / detach -------------------------------------------------------------

    def _attach(self, connection: Connection) -> Attachment:
        if self.connection is not None:
            raise Conflict("session is attached to another connection")
        self.registry.pipelines.get(self.record.pipeline)
        self.connection = connection
        self.record.attached = True
        self.registry.attached_changed(+1)
        labels = self.registry.metrics.frames
        superseded = labels.loop_shard(self.record.pipeline, "superseded").inc
        frames_in = labels.loop_shard(self.record.pipeline, "in").inc
        self._drain = make_drain(
            self.record.drain, self.registry.settings.drain_capacity, superseded
        )
        self._pump = asyncio.get_running_loop().create_task(
            self._run_pump(self._drain, connection), name=f"pump:{self.record.id}"
        )
        self._pump.add_done_callback(self._watch)
        handle = self.registry.pipelines.get(self.record.pipeline)
        self._unsubscribe = handle.subscribe(self._pipeline_event)
        return Attachment(self.record, self._drain, frames_in)

    def _watch(self, task: asyncio.Task[None]) -> None:
        """The pump and its sender must never die quietly: if one fails, so does the
        session (its client gets 1011 and can resume; nothing stalls unseen)."""
        if not task.cancelled() and task.exception() is not None:
            self._tell_quietly(_TaskFailed(task.exception(), self.context.incarnation))

    def _detach(self) -> None:
        if self.connection is None:
            return
        self.connection = None
        self.record.attached = False
        self.registry.attached_changed(-1)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._drain is not None:
            self.record.stats.superseded += self._drain.take_superseded()
            self._drain.close()
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._schedule_expiry()

    @property
    def _idle(self) -> float:
        timeout: float = self.registry.settings.session_idle_timeout
        return timeout

    def _schedule_expiry(self) -> None:
        self._detached_at = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.call_later(self._idle, self._tell_quietly, _Expire(self._detached_at))

    def _tell_quietly(self, message: Message) -> None:
        with contextlib.suppress(ActorError):
            self.context.ref.tell(message)

    def _pipeline_event(self, event: str) -> None:
        connection = self.connection
        if connection is not None:
            data = {"pipeline": self.record.pipeline}
            asyncio.get_running_loop().create_task(connection.send_event(event, data))

    # --- params and calls ----------------------------------------------------------

    def _update_params(self, patch: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.record.params, **patch}
        self.registry.pipelines.get(self.record.pipeline).plugin.parse_params(merged)
        self.record.params = merged
        return dict(merged)

    def _call(self, call: Call) -> Any:
        if call.method == "session.stats":
            drain = self._drain
            queued = {} if drain is None else {"queued": len(drain), "queued_peak": drain.peak}
            return {**self.record.stats.as_dict(), **queued}
        if call.method == "session.params":
            patch = call.args.get("set")
            if isinstance(patch, dict):
                return self._update_params(patch)
            return dict(self.record.params)
        if call.method == "pipeline.info":
            handle = self.registry.pipelines.get(self.record.pipeline)
            return {
                "name": handle.name,
                "kind": handle.config.kind,
                "replicas": handle.config.replicas,
                "ready": handle.ready,
                "params_schema": handle.plugin.params_schema(),
            }
        raise Invalid(f"unknown method {call.method!r}")

    # --- the pump: drain → pipeline → connection, in order -----------------------------

    async def _run_pump(self, drain: Drain, connection: Connection) -> None:
        """One task per attached session moves frames both ways: it admits frames
        from the drain into the pipeline (up to ``max_inflight`` at once, and only
        when the pipeline's room lets it in) and sends the answers back in ``seq``
        order. It sleeps on the drain's bell, which the drain, the room and every
        pending answer ring."""
        limit = self.record.max_inflight(self.registry.settings)
        bell = drain.bell
        ticket = Ticket(bell)
        order: deque[Pending] = deque()
        waiting: Room | None = None  # where our ticket may be queued or granted
        send = self._answerer(drain, connection)
        try:
            while not drain.closed:
                while len(order) < limit and len(drain):
                    handle = self._handle()
                    room = None if handle is None else handle.room
                    if waiting is not None and waiting is not room:
                        waiting.withdraw(ticket)  # the pipeline was replaced meanwhile
                    waiting = room
                    if room is not None and not room.enter(ticket):
                        break  # queued: the bell rings when our turn comes
                    order.append(self._dispatch(drain.take(), handle, room, bell))
                if order and order[0][1].done():
                    if waiting is not None:
                        # a slow client can hold up the send: while it does, our place
                        # in the queue (or one just handed to us) goes to others
                        waiting.withdraw(ticket)
                    frame, future = order.popleft()
                    await send(frame, future)
                    continue
                await bell.wait()
        finally:
            if waiting is not None:
                waiting.withdraw(ticket)
            for _, future in order:
                future.cancel()

    def _session_params(self, plugin: PipelineKind) -> Any:
        """The session's params, validated once per change rather than once per frame
        (``record.params`` is replaced, never mutated, when they change)."""
        cached = self._parsed
        if cached is None or cached[0] is not plugin or cached[1] is not self.record.params:
            cached = (plugin, self.record.params, plugin.parse_params(self.record.params))
            self._parsed = cached
        return cached[2]

    def _dispatch(
        self, frame: InboundFrame, handle: PipelineHandle | None, room: Room | None, bell: Doorbell
    ) -> Pending:
        """Submit ``frame``; its room place goes back, and the pump's bell rings, when
        the answer lands (at once for an answer that is already there)."""
        future = self._submit(frame, handle)
        if future.done():
            if room is not None:
                room.release()
        else:
            if room is not None:
                future.add_done_callback(room.release)
            future.add_done_callback(bell.ring)
        return frame, future

    def _handle(self) -> PipelineHandle | None:
        try:
            return self.registry.pipelines.get(self.record.pipeline)
        except NotFound:
            return None  # the frame will be answered with the error

    def _submit(
        self, frame: InboundFrame, handle: PipelineHandle | None
    ) -> asyncio.Future[PipelineAnswer]:
        """Hand a frame to the pipeline without a task per frame. Errors before
        sending come back as a failed future."""
        record = self.record
        try:
            if handle is None:
                handle = self.registry.pipelines.get(record.pipeline)  # raises NotFound
            if frame.params:
                params = handle.plugin.parse_params({**record.params, **frame.params})
            else:
                params = self._session_params(handle.plugin)
            job = FrameIn(frame.payload, frame.content_type, frame.width, frame.height, params)
            return handle.submit(job, self.registry.settings.frame_timeout)
        except EaselError as error:
            future: asyncio.Future[PipelineAnswer] = asyncio.get_running_loop().create_future()
            future.set_exception(error)
            return future

    def _outcome(self, future: asyncio.Future[PipelineAnswer]) -> PipelineAnswer | EaselError:
        """The answer, or the error to send for that frame."""
        try:
            return future.result()
        except ActorError as error:
            failed = PipelineError(f"pipeline {self.record.pipeline} failed on this frame: {error}")
            failed.__cause__ = error
            return failed
        except EaselError as error:
            return error

    def _answerer(self, drain: Drain, connection: Connection) -> Answerer:
        """How this attachment answers one frame: RESULT or ERROR, with its stats."""
        record, metrics = self.record, self.registry.metrics
        pipeline = record.pipeline
        out_count = metrics.frames.loop_shard(pipeline, "out").inc
        err_count = metrics.frames.loop_shard(pipeline, "errored").inc
        latency = metrics.latency.loop_shard(pipeline).observe
        stats = record.stats

        async def send(frame: InboundFrame, future: asyncio.Future[PipelineAnswer]) -> None:
            answer = self._outcome(future)
            try:
                if isinstance(answer, EaselError):
                    stats.errors += 1
                    err_count()
                    await connection.send_error(answer, frame.seq)
                    return
                superseded = drain.take_superseded()
                stats.superseded += superseded
                total = time.perf_counter() - frame.received
                total_ms = total * 1000.0
                timings = {
                    "queue_ms": answer.queue_ms,
                    "pipeline_ms": answer.pipeline_ms,
                    "total_ms": total_ms,
                }
                await connection.send_result(frame.seq, answer.out, timings, superseded)
            except Exception:
                # e.g. a plug-in answered with a content type the protocol lacks: that
                # frame gets an internal error, the session goes on
                log.exception("session %s: answer to seq %d not sent", record.id, frame.seq)
                stats.errors += 1
                err_count()
                await connection.send_error(EaselError("the answer could not be sent"), frame.seq)
                return
            stats.frames_out += 1
            stats.last_total_ms = total_ms
            out_count()
            latency(total)

        return send

    # --- endings -------------------------------------------------------------------

    async def _say_goodbye(self, code: int, reason: str, event: bool) -> None:
        connection = self.connection
        self._detach()
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if event:
                await connection.send_event("session.closed", {"reason": reason})
            await connection.close(code, reason)

    async def on_stop(self) -> None:
        final = self._closing is not None or self.context.ref.state is ActorState.STOPPING
        if not final:
            # stopped for a restart (a supervisor above restarts its children): the
            # record stays, the client may resume
            await self._say_goodbye(1011, "session restarting", event=False)
            return
        closing = self._closing or Close(1001, "server going away")
        await self._say_goodbye(closing.code, closing.reason, event=True)
        self.registry.forget(self.record.id)

    async def on_failure(self, error: BaseException) -> None:
        await self._say_goodbye(1011, "internal error", event=False)
