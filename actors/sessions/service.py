"""The session service: create, find, authenticate, update and end sessions. Loop only.

Each session is a transient child of the ``/sessions`` supervisor at
``/sessions/<id>``: restarted after a crash (same state: params, token, stats), gone after a
normal end (idle timeout, delete).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from typing import Any

from actors.metrics import RealtimeMetrics
from actors.pipelines.service import PipelineService
from actors.sessions.actor import SessionActor
from actors.sessions.deps import SessionDeps
from actors.sessions.follow import JobFeed
from actors.sessions.messages import Close, SessionMessage, UpdateParams
from actors.sessions.state import SessionState
from engine.errors import EaselError, Invalid, NotFound, Overloaded, Unauthorized
from engine.mailbox import MailboxSpec
from engine.ref import ActorRef
from engine.settings import Settings
from engine.storage import NewSession, SessionPatch, Sessions
from engine.supervisor import ActorSpec, Restart, Supervisor
from engine.types import DrainStrategy

__all__ = ["SessionService"]

log = logging.getLogger(__name__)


class SessionService:
    def __init__(
        self,
        supervisor: Supervisor,
        pipelines: PipelineService,
        settings: Settings,
        metrics: RealtimeMetrics,
        stored: Sessions | None = None,
        jobs: JobFeed | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.pipelines = pipelines
        self.settings = settings
        self.metrics = metrics
        self.stored = stored
        self._states: dict[str, SessionState] = {}
        self._attached = 0
        self._reserved = 0
        """Sessions being created right now: they count towards the limit."""
        self._writes: set[asyncio.Task[None]] = set()
        self._owned: dict[str, int] = {}
        """Open (and starting) sessions per owning key."""
        self._deps = SessionDeps(
            settings, metrics, pipelines, self.attached_changed, self.forget, jobs
        )

    def __len__(self) -> int:
        return len(self._states)

    async def create(
        self,
        pipeline: str,
        drain: DrainStrategy = DrainStrategy.LATEST,
        params: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> SessionState:
        """Start a session for the API key ``owner``. Raises ``Overloaded`` at the
        session limit, or the key's own (retry later), ``Invalid`` for an unknown
        pipeline, ``BadParams`` for params it rejects."""
        retry_after = max(1.0, self.settings.session_idle_timeout / 4)
        if len(self._states) + self._reserved >= self.settings.max_sessions:
            log.warning("session refused: the engine is at %d sessions", len(self._states))
            raise Overloaded(
                f"the engine is at its limit of {self.settings.max_sessions} sessions",
                retry_after=retry_after,
            )
        limit = self.settings.max_sessions_per_key
        if owner is not None and self._owned.get(owner, 0) >= limit:
            log.warning("session refused: key %s is at its limit of %d sessions", owner, limit)
            raise Overloaded(
                f"this key is at its limit of {limit} sessions", retry_after=retry_after
            )
        try:
            handle = self.pipelines.get(pipeline)
        except NotFound:
            raise Invalid(f"no pipeline named {pipeline!r}") from None
        params = dict(params or {})
        handle.plugin.parse_params(params)
        self._reserved += 1  # the slot is ours across the awaits below
        self._own(owner, 1)
        try:
            state = await self._start(pipeline, drain, params, owner)
        except BaseException:
            self._own(owner, -1)
            raise
        finally:
            self._reserved -= 1
        return state

    def _own(self, owner: str | None, delta: int) -> None:
        if owner is None:
            return
        count = self._owned.get(owner, 0) + delta
        if count > 0:
            self._owned[owner] = count
        else:
            self._owned.pop(owner, None)

    async def _start(
        self, pipeline: str, drain: DrainStrategy, params: dict[str, Any], owner: str | None
    ) -> SessionState:
        session_id = secrets.token_hex(8)
        if self.stored is not None:
            new = NewSession(pipeline=pipeline, drain=str(drain), params=params, owner=owner)
            session_id = (await self.stored.create(new)).id
        state = SessionState(
            id=session_id,
            token=secrets.token_urlsafe(24),
            pipeline=pipeline,
            drain=drain,
            params=params,
            created_at=time.time(),
            owner=owner,
        )
        self._states[state.id] = state
        try:
            await self.supervisor.start_child(
                ActorSpec(
                    id=state.id,
                    factory=lambda: SessionActor(state, self._deps),
                    restart=Restart.TRANSIENT,
                    kind="session",
                    mailbox=MailboxSpec(capacity=256),
                    shutdown_timeout=5.0,
                )
            )
        except BaseException:
            self._states.pop(state.id, None)
            if self.stored is not None:
                with contextlib.suppress(EaselError):  # don't keep a session that never ran
                    await self.stored.delete(state.id)
            raise
        self._count()
        return state

    def get(self, session_id: str) -> SessionState:
        state = self._states.get(session_id)
        if state is None:
            raise NotFound(f"no session {session_id!r}")
        return state

    def ref(self, session_id: str) -> ActorRef[SessionMessage, Any]:
        self.get(session_id)
        return self.supervisor.system.lookup(f"{self.supervisor.path}/{session_id}")

    def states(self) -> list[SessionState]:
        return sorted(self._states.values(), key=lambda r: (r.created_at, r.id))

    def authenticate(self, session_id: str, token: str | None) -> SessionState:
        """The session if ``token`` is its token; ``NotFound`` or ``Unauthorized`` otherwise."""
        state = self.get(session_id)
        if token is None or not hmac.compare_digest(
            state.token.encode(), token.encode(errors="replace")
        ):
            raise Unauthorized("a valid session token is required")
        return state

    async def update_params(self, session_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the session's params (validated) and store them."""
        result: dict[str, Any] = await self.ref(session_id).ask(UpdateParams(patch))
        if self.stored is not None:
            await self.stored.update(session_id, SessionPatch(params=result))
        return result

    async def delete(self, session_id: str) -> None:
        """End a session: its client gets EVENT ``session.closed`` and a 1000 close."""
        ref = self.ref(session_id)
        await ref.ask(Close(1000, "session deleted"))
        try:
            await self.supervisor.terminate_child(session_id)
        except NotFound:
            pass  # it already ended by itself
        self.forget(session_id)

    def forget(self, session_id: str) -> None:
        """Called by a session when it ends for good: its final params and stats are
        written to the store in the background (``flush`` waits for them)."""
        state = self._states.pop(session_id, None)
        if state is None:
            return
        self._own(state.owner, -1)
        self._count()
        if self.stored is not None:
            task = asyncio.get_running_loop().create_task(self._finish(state))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _finish(self, state: SessionState) -> None:
        assert self.stored is not None
        try:
            await self.stored.finish(state.id, state.stats.as_dict(), params=state.params)
        except EaselError:
            log.exception("session %s: final stats could not be stored", state.id)

    async def flush(self) -> None:
        """Wait for pending writes of ended sessions."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    def attached_changed(self, delta: int) -> None:
        self._attached += delta
        self._count()

    def _count(self) -> None:
        self.metrics.sessions.labels("attached").set(self._attached)
        self.metrics.sessions.labels("detached").set(len(self._states) - self._attached)
