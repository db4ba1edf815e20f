"""The session actor: one per canvas session, on the loop.

A session owns its params, its pipeline binding, its drain strategy, its stats and
its one attached connection. Frames do not go through the session's mailbox: the
WebSocket reader puts them into the session's drain (the session's frame mailbox,
with the drain's overflow rule) through the ``Attachment`` the session hands out, and
the session's ``FramePump`` moves them to the pipeline and the answers back, in order.

What a user handed us lives in ``SessionState``, which outlives incarnations: a
crashed session closes its socket (1011), restarts with the same params and can be
resumed with its token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from actors.sessions.deps import SessionDeps
from actors.sessions.drains import Drain, make_drain
from actors.sessions.follow import Follower
from actors.sessions.messages import (
    Attach,
    Attachment,
    Call,
    Close,
    Connection,
    Describe,
    Detach,
    Expire,
    PumpFailed,
    SessionMessage,
    UpdateParams,
)
from actors.sessions.pump import FramePump
from actors.sessions.state import SessionState
from engine.actor import LoopActor
from engine.errors import ActorError, BadParams, Conflict, Invalid, MailboxFull, NotFound
from engine.ref import ActorState

__all__ = ["SessionActor"]

log = logging.getLogger(__name__)


class SessionActor(LoopActor[SessionMessage, Any]):
    kind = "session"

    def __init__(self, state: SessionState, deps: SessionDeps) -> None:
        self.state = state
        self.deps = deps
        self.connection: Connection | None = None
        self._drain: Drain | None = None
        self._pump: asyncio.Task[None] | None = None
        self._frames: FramePump | None = None
        self._unsubscribe: Any = None
        self._closing: Close | None = None
        self._detached_at = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._event_sends: set[asyncio.Task[None]] = set()
        """EVENT frames on their way to the client; cancelled when it detaches."""
        self._follower: Follower | None = None
        """The jobs the attached connection follows (``job.subscribe``)."""

    def log_fields(self) -> dict[str, str]:
        return {"session_id": self.state.id}

    async def on_start(self) -> None:
        self.state.attached = False
        self._schedule_expiry()

    async def receive(self, message: SessionMessage) -> Any:
        match message:
            case Attach(connection):
                return self._attach(connection)
            case Detach(connection):
                return self._detach_if(connection)
            case UpdateParams(params):
                return self._update_params(params)
            case Describe():
                return self.state.describe()
            case Call(method="job.subscribe"):
                return await self._subscribe(message)
            case Call():
                return self._call(message)
            case Close():
                return await self._close(message)
            case Expire(detached_at):
                return self._expire(detached_at)
            case PumpFailed(error, incarnation):
                return self._pump_failed(error, incarnation)
        raise Invalid(f"unknown session message {type(message).__name__}")

    # --- attach / detach -------------------------------------------------------------

    def _attach(self, connection: Connection) -> Attachment:
        if self.connection is not None:
            raise Conflict("session is attached to another connection")
        state, deps = self.state, self.deps
        handle = deps.pipelines.get(state.pipeline)
        self.connection = connection
        state.attached = True
        deps.attached_changed(+1)
        frames = deps.metrics.frames
        superseded = frames.loop_shard(state.pipeline, "superseded").inc
        frames_in = frames.loop_shard(state.pipeline, "in").inc
        self._drain = make_drain(state.drain, deps.settings.drain_capacity, superseded)
        pump = self._frames = FramePump(state, self._drain, connection, deps)
        self._pump = asyncio.get_running_loop().create_task(pump.run(), name=f"pump:{state.id}")
        self._pump.add_done_callback(self._watch)
        self._unsubscribe = handle.subscribe(self._pipeline_event)
        if deps.jobs is not None:
            self._follower = Follower(deps.jobs, state.owner, connection.send_event)
        return Attachment(state, self._drain, frames_in, state.credit(deps.settings))

    def _watch(self, task: asyncio.Task[None]) -> None:
        """The pump must never die quietly: if it fails, so does the session (its
        client gets 1011 and can resume; nothing stalls unseen)."""
        if not task.cancelled() and task.exception() is not None:
            self._tell_quietly(PumpFailed(task.exception(), self.context.incarnation))

    def _detach_if(self, connection: Connection) -> None:
        if connection is self.connection:
            self._detach()

    def _detach(self) -> None:
        if self.connection is None:
            return
        self.connection = None
        self.state.attached = False
        self.deps.attached_changed(-1)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        if self._drain is not None:
            self.state.stats.superseded += self._drain.take_superseded()
            self._drain.close()
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
            self._frames = None
        for send in self._event_sends:
            send.cancel()
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        self._detached_at = time.monotonic()
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(
            self._idle_timeout, self._tell_quietly, Expire(self._detached_at)
        )

    @property
    def _idle_timeout(self) -> float:
        return float(self.deps.settings.session_idle_timeout)

    def _tell_quietly(self, message: SessionMessage) -> None:
        with contextlib.suppress(ActorError, MailboxFull):
            self.context.ref.tell(message)

    def _pipeline_event(self, event: str) -> None:
        connection = self.connection
        if connection is None:
            return
        send = connection.send_event(event, {"pipeline": self.state.pipeline})
        task = asyncio.get_running_loop().create_task(send)
        self._event_sends.add(task)
        task.add_done_callback(self._event_sends.discard)

    # --- params and calls ------------------------------------------------------------

    def _update_params(self, patch: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.state.params, **patch}
        self.deps.pipelines.get(self.state.pipeline).plugin.parse_params(merged)
        self.state.params = merged
        return dict(merged)

    def _call(self, call: Call) -> Any:
        if call.method == "session.stats":
            drain = self._drain
            queued = {} if drain is None else {"queued": len(drain), "queued_peak": drain.peak}
            return {**self.state.stats.as_dict(), **queued}
        if call.method == "session.params":
            patch = call.args.get("set")
            if isinstance(patch, dict):
                return self._update_params(patch)
            return dict(self.state.params)
        if call.method == "pipeline.info":
            handle = self.deps.pipelines.get(self.state.pipeline)
            return {
                "name": handle.name,
                "kind": handle.config.kind,
                "replicas": handle.config.replicas,
                "ready": handle.ready,
                "params_schema": handle.plugin.params_schema(),
            }
        raise Invalid(f"unknown method {call.method!r}")

    async def _subscribe(self, call: Call) -> Any:
        job_id = call.args.get("job")
        if not isinstance(job_id, str) or not job_id:
            raise BadParams("job.subscribe needs the job's id as args.job")
        if self.deps.jobs is None or self._follower is None:
            raise NotFound("this engine has no jobs to follow")
        return await self._follower.follow(job_id)

    # --- endings ---------------------------------------------------------------------

    async def _close(self, close: Close) -> None:
        pump, frames = self._pump, self._frames
        if close.finish > 0 and pump is not None and frames is not None:
            frames.finish()  # answer what the pipeline holds, within close.finish
            await asyncio.wait({pump}, timeout=close.finish)
        self._end(close)

    def _end(self, close: Close) -> None:
        self._closing = close
        self.context.stop()

    def _expire(self, detached_at: float) -> None:
        if self.connection is None and detached_at == self._detached_at:
            log.info("session %s expired after %.1fs idle", self.state.id, self._idle_timeout)
            self._end(Close(1000, "idle timeout"))

    def _pump_failed(self, error: BaseException | None, incarnation: int) -> None:
        if incarnation != self.context.incarnation:
            return  # a pump of an earlier incarnation
        raise RuntimeError("the session's frame pump failed") from error

    async def _say_goodbye(self, code: int, reason: str, event: bool) -> None:
        connection = self.connection
        self._detach()
        if self._expiry is not None:  # this incarnation is ending: no idle timer
            self._expiry.cancel()
            self._expiry = None
        if self._event_sends:
            await asyncio.gather(*self._event_sends, return_exceptions=True)
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
            # state stays, the client may resume
            await self._say_goodbye(1011, "session restarting", event=False)
            return
        closing = self._closing or Close(1001, "server going away")
        try:
            await self._say_goodbye(closing.code, closing.reason, event=True)
        finally:  # even when a client that reads nothing makes the stop time out
            self.deps.ended(self.state.id)

    async def on_failure(self, error: BaseException) -> None:
        await self._say_goodbye(1011, "internal error", event=False)
