"""One ComfyUI server as a supervised loop actor: its state, health, socket and catalog.

The actor keeps ONE WebSocket to its server (client id ``easel-<node>-<server>``,
so every prompt this node submits there reports its events to it), reopened with
exponential backoff whenever it drops. Every ``health_interval`` it reads
``/system_stats`` and ``/queue``; it fetches the model catalog on connecting and
every ``catalog_interval``. Its state is an explicit machine::

    connecting ─► idle ⇄ busy          (socket open, health answered; busy: a queue)
        ▲   │       │      │
        │   ▼       ▼      ▼
        └─ unhealthy ◄─────┘            (health failed or the socket dropped)
    any ─► disabled ─► connecting      (an operator's choice)

Everything it learns goes to a :class:`ServerListener` (the fleet): every event and
preview from the socket, and a new :class:`ServerView` on every change. Its two
background tasks only observe and tell the actor; the actor alone changes its
state. A task that fails in a way it does not expect crashes the actor, and the
``/comfyui`` supervisor starts a fresh incarnation. Loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from actors.comfyui.catalog import Catalog, fetch_catalog
from actors.comfyui.client import ComfyClient, ComfyEvent, ComfyUnavailable, EventStream, Preview
from engine.actor import LoopActor
from engine.ref import ActorRef
from engine.storage import ComfyServer

__all__ = [
    "Describe",
    "Disable",
    "Enable",
    "ServerActor",
    "ServerListener",
    "ServerMessage",
    "ServerState",
    "ServerTimings",
    "ServerView",
]

log = logging.getLogger(__name__)


class ServerState(StrEnum):
    CONNECTING = "connecting"
    IDLE = "idle"
    BUSY = "busy"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"


_S = ServerState
_TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    _S.CONNECTING: frozenset({_S.IDLE, _S.BUSY, _S.UNHEALTHY, _S.DISABLED}),
    _S.IDLE: frozenset({_S.BUSY, _S.UNHEALTHY, _S.CONNECTING, _S.DISABLED}),
    _S.BUSY: frozenset({_S.IDLE, _S.UNHEALTHY, _S.CONNECTING, _S.DISABLED}),
    _S.UNHEALTHY: frozenset({_S.CONNECTING, _S.IDLE, _S.BUSY, _S.DISABLED}),
    _S.DISABLED: frozenset({_S.CONNECTING}),
}
READY = frozenset({ServerState.IDLE, ServerState.BUSY})
"""States in which a server takes jobs."""


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the fleet knows of one server at one moment."""

    id: str
    name: str
    url: str
    max_jobs: int
    tags: tuple[str, ...]
    state: ServerState = ServerState.CONNECTING
    queue_remaining: int = 0
    version: str | None = None
    devices: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    checked_at: float | None = None
    """Wall-clock time of the last health answer."""
    catalog: Catalog = field(default_factory=Catalog)
    catalog_at: float | None = None
    connects: int = 0
    """Times the WebSocket opened (reconnects are ``connects - 1``)."""

    @property
    def ready(self) -> bool:
        return self.state in READY and self.catalog_at is not None

    def describe(self) -> dict[str, Any]:
        """JSON for the REST API."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "max_in_flight": self.max_jobs,
            "tags": list(self.tags),
            "state": self.state.value,
            "health": {
                "queue_remaining": self.queue_remaining,
                "comfyui_version": self.version,
                "devices": list(self.devices),
                "error": self.error,
                "checked_at": self.checked_at,
                "connects": self.connects,
            },
        }


class ServerListener(Protocol):
    """Who hears from server actors (the fleet). Called on the loop, never awaited."""

    def server_changed(self, view: ServerView) -> None: ...

    def server_event(self, server_id: str, client_id: str, item: ComfyEvent | Preview) -> None: ...


@dataclass(frozen=True, slots=True)
class ServerTimings:
    health_interval: float = 2.0
    catalog_interval: float = 60.0
    reconnect_initial: float = 0.05
    reconnect_max: float = 10.0


# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Describe:
    """Answers the current :class:`ServerView`."""


@dataclass(frozen=True, slots=True)
class Disable:
    """Close the socket, stop checking; answers the view."""


@dataclass(frozen=True, slots=True)
class Enable:
    """Connect again after ``Disable``; answers the view."""


@dataclass(frozen=True, slots=True)
class _Socket:
    open: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Health:
    stats: dict[str, Any] | None
    remaining: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Queue:
    remaining: int


@dataclass(frozen=True, slots=True)
class _Catalog:
    catalog: Catalog


@dataclass(frozen=True, slots=True)
class _Crashed:
    error: BaseException


ServerMessage = Describe | Disable | Enable | _Socket | _Health | _Queue | _Catalog | _Crashed


class ServerActor(LoopActor[ServerMessage, ServerView]):
    """The actor of one registered server (see the module docstring)."""

    kind = "comfyui_server"

    def __init__(
        self,
        record: ComfyServer,
        client: ComfyClient,
        listener: ServerListener,
        client_id: str,
        timings: ServerTimings,
    ) -> None:
        self._client = client
        self._listener = listener
        self._timings = timings
        self.client_id = client_id
        self._view = ServerView(
            record.id,
            record.name,
            record.url,
            record.max_jobs,
            tuple(record.tags),
            ServerState.CONNECTING if record.enabled else ServerState.DISABLED,
        )
        self._socket_open = False
        self._health_ok = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stream: EventStream | None = None

    # --- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        self._listener.server_changed(self._view)
        if self._view.state is not ServerState.DISABLED:
            self._start_tasks()

    async def on_stop(self) -> None:
        # Stopped for good (deleted, or the engine stops): the shared HTTP client goes
        # too. A crash keeps it for the next incarnation.
        await self._stop_tasks()
        await self._client.close()

    async def on_failure(self, error: BaseException) -> None:
        await self._stop_tasks()

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._guard(self._watch())),
            loop.create_task(self._guard(self._poll())),
        ]

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        stream, self._stream = self._stream, None
        if stream is not None:
            # bounded: a server that died mid-handshake never answers the close
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await stream.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._socket_open = self._health_ok = False

    async def _guard(self, work: Any) -> None:
        # A task's surprise is the actor's: crash it so the supervisor restarts it.
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("%s: a background task failed", self.context.path)
            with contextlib.suppress(Exception):
                self.context.ref.tell(_Crashed(error))

    # --- messages ------------------------------------------------------------------

    async def receive(self, message: ServerMessage) -> ServerView:
        match message:
            case Describe():
                pass
            case Disable():
                if self._view.state is not ServerState.DISABLED:
                    await self._stop_tasks()
                    self._move(ServerState.DISABLED, error=None)
            case Enable():
                if self._view.state is ServerState.DISABLED:
                    self._move(ServerState.CONNECTING)
                    self._start_tasks()
            case _Socket(open=is_open, error=error):
                self._socket_open = is_open
                connects = self._view.connects + (1 if is_open else 0)
                self._settle(error=error, connects=connects)
            case _Health(stats=stats, remaining=remaining, error=error):
                self._health_ok = stats is not None
                changes: dict[str, Any] = {"queue_remaining": remaining, "error": error}
                if stats is not None:
                    system = stats.get("system", {})
                    changes["version"] = system.get("comfyui_version")
                    changes["devices"] = tuple(stats.get("devices", ()))
                    changes["checked_at"] = time.time()
                self._settle(**changes)
            case _Queue(remaining=remaining):
                self._settle(queue_remaining=remaining)
            case _Catalog(catalog=catalog):
                self._settle(catalog=catalog, catalog_at=time.time())
            case _Crashed(error=error):
                raise RuntimeError(f"{self.context.path}: background task failed") from error
        return self._view

    def _settle(self, **changes: Any) -> None:
        """Apply ``changes`` and move to the state they imply."""
        if self._view.state is ServerState.DISABLED:
            return
        view = replace(self._view, **changes)
        if not self._socket_open or not self._health_ok:
            target = ServerState.UNHEALTHY if view.error else ServerState.CONNECTING
        else:
            target = ServerState.BUSY if view.queue_remaining else ServerState.IDLE
        self._move(target, **changes)

    def _move(self, target: ServerState, **changes: Any) -> None:
        old = self._view
        if target is not old.state and target not in _TRANSITIONS[old.state]:
            raise RuntimeError(f"{self.context.path}: cannot go from {old.state} to {target}")
        self._view = replace(old, state=target, **changes)
        if self._view != old:
            self._listener.server_changed(self._view)

    # --- background: the socket ------------------------------------------------------

    async def _watch(self) -> None:
        attempt = 0
        ref = self.context.ref
        while True:
            try:
                stream = await self._client.connect_events(self.client_id)
            except ComfyUnavailable as error:
                ref.tell(_Socket(False, str(error)))
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self._stream = stream
            ref.tell(_Socket(True))
            await self._check(ref)
            await self._refresh(ref)
            async for item in stream:
                if isinstance(item, ComfyEvent) and item.type == "status":
                    remaining = item.data.get("status", {}).get("exec_info", {})
                    ref.tell(_Queue(int(remaining.get("queue_remaining", 0))))
                self._listener.server_event(self._view.id, self.client_id, item)
            self._stream = None
            ref.tell(_Socket(False, f"socket closed ({stream.close_code})"))
            await asyncio.sleep(self._backoff(0))

    def _backoff(self, attempt: int) -> float:
        base = min(self._timings.reconnect_max, self._timings.reconnect_initial * 2.0**attempt)
        return base * random.uniform(0.8, 1.2)

    # --- background: health and catalog -------------------------------------------------

    async def _poll(self) -> None:
        ref = self.context.ref
        last_catalog = time.monotonic()
        while True:
            await asyncio.sleep(self._timings.health_interval)
            await self._check(ref)
            if time.monotonic() - last_catalog >= self._timings.catalog_interval:
                last_catalog = time.monotonic()
                await self._refresh(ref)

    async def _check(self, ref: ActorRef[ServerMessage, ServerView]) -> None:
        try:
            stats = await self._client.system_stats()
            queue = await self._client.queue()
        except ComfyUnavailable as error:
            ref.tell(_Health(None, error=str(error)))
            stream = self._stream
            if stream is not None:  # a server that doesn't answer gets a fresh socket
                await stream.close()
            return
        ref.tell(_Health(stats, queue.remaining))

    async def _refresh(self, ref: ActorRef[ServerMessage, ServerView]) -> None:
        try:
            catalog = await fetch_catalog(self._client)
        except ComfyUnavailable as error:
            log.info("%s: catalog not refreshed: %s", self.context.path, error)
            return
        ref.tell(_Catalog(catalog))
