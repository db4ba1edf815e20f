"""TCP connections: a cap on how many are open, and a deadline for a new one's request head.

aiohttp's ``Server`` makes one ``RequestHandler`` (an asyncio protocol) per accepted
connection. ``GuardedRunner`` hands the listening sockets a ``ConnectionGuard`` in its
place, so every site (``easel serve`` and the test server alike) accepts through it:

- A new connection has ``header_timeout`` seconds to send a complete first request
  head; otherwise it is closed (``idle`` if it sent nothing, ``header_timeout`` if it
  sent part of a head: a slow client). Between requests of a keep-alive connection,
  aiohttp itself closes one whose next head has not arrived ``keepalive_timeout``
  after the previous response (its timer also runs from the accept, so a
  ``keepalive_timeout`` shorter than ``header_timeout`` closes first, uncounted).
- At ``max_connections`` open connections, a new one takes the place of the oldest
  connection still waiting for its first head after ``EVICT_AFTER`` (``evicted``): a
  client that sends its request at once is served even while idle or slow sockets
  fill the cap. With no such connection, the new one is answered a bare 503 and closed
  (``max_connections``).
- Once the first head is complete the guard steps aside (``transport.set_protocol``):
  upgraded WebSockets (which have their own HELLO and idle deadlines) and the frame
  path do not go through it.

Each kind of refusal is counted in ``easel_connections_refused_total{reason}`` and
logged once, then summed up at most once a minute while it goes on
(``RefusalLog``). ``easel_connections`` is the number of open connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from typing import Any, Final, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.settings import Settings
from transport.keys import ENGINE

__all__ = ["EVICT_AFTER", "ConnectionGuard", "GuardedRunner", "Refusal", "RefusalLog"]

log = logging.getLogger(__name__)

EVICT_AFTER: Final = 1.0
"""Seconds a connection may wait for its first head before a newcomer at the cap may
take its place. A client sends its head right after connecting (one round trip)."""

SUMMARY_EVERY: Final = 60.0
"""Seconds between two log lines about one kind of refusal."""

_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
    b"Retry-After: 1\r\n\r\n"
)
LINGER: Final = 2.0
"""Seconds the rest of a request body the answer did not need is read (and dropped)
before the connection closes: enough for a client to read the answer, too little for
a slow one to hold the connection (aiohttp's default is 10)."""
_HEAD_ENDS: Final = (b"\r\n\r\n", b"\n\n")


class Refusal(StrEnum):
    """Why the guard closed a connection (the ``reason`` label)."""

    MAX_CONNECTIONS = "max_connections"
    EVICTED = "evicted"
    IDLE = "idle"
    HEADER_TIMEOUT = "header_timeout"


class RefusalLog:
    """Counts refusals and logs each kind once, then a summary per ``interval`` while
    they go on ("N more … since T"); a kind quiet for a whole interval is logged again
    from its next refusal. Loop only."""

    def __init__(self, counter: Counter, interval: float = SUMMARY_EVERY) -> None:
        self._counter = counter
        self._interval = interval
        self._since: dict[Refusal, tuple[float, int]] = {}
        """By kind: when its current summary began and how many refusals it holds."""

    def refused(self, reason: Refusal, detail: str) -> None:
        self._counter.labels(reason.value).inc()
        window = self._since.get(reason)
        if window is not None:
            self._since[reason] = (window[0], window[1] + 1)
            return
        log.warning(
            "connection refused (%s): %s; further ones are summed up every %.0fs",
            reason.value,
            detail,
            self._interval,
        )
        self._open(reason)

    def _open(self, reason: Refusal) -> None:
        self._since[reason] = (time.time(), 0)
        asyncio.get_running_loop().call_later(self._interval, self._summarize, reason)

    def _summarize(self, reason: Refusal) -> None:
        since, count = self._since.pop(reason)
        if count == 0:
            return
        log.warning(
            "%d more connections refused (%s) since %s",
            count,
            reason.value,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)),
        )
        self._open(reason)


class ConnectionGuard:
    """The protocol factory the listening sockets call, in place of aiohttp's
    ``Server``: one ``_Waiting`` per connection, until its first request head. Loop only.
    """

    def __init__(self, server: web.Server, settings: Settings, registry: CollectorRegistry):
        self.server = server
        self.max_connections = settings.max_connections
        self.header_timeout = settings.header_timeout
        self.log = RefusalLog(
            Counter(
                "easel_connections_refused",
                "TCP connections refused or closed by the guard, by reason.",
                ["reason"],
                registry=registry,
            )
        )
        Gauge("easel_connections", "Open TCP connections.", registry=registry).set_function(
            self.open_count
        )
        self._waiting: dict[_Waiting, None] = {}
        """Connections without a complete first head, oldest first."""
        self._open: dict[asyncio.BaseTransport, None] = {}
        """Every admitted connection's transport, until it is seen closed. Counted by
        transport, not by aiohttp's handlers: a handler outlives its connection while
        its request runs on (a stream whose client left must not hold a place)."""

    def open_count(self) -> int:
        """Open TCP connections (those seen closed are forgotten here)."""
        for transport in [t for t in self._open if t.is_closing()]:
            del self._open[transport]
        return len(self._open)

    def __call__(self) -> asyncio.Protocol:
        return _Waiting(self)

    def admit(self, waiting: _Waiting) -> bool:
        """Whether a new connection may open: there is room, or it takes the place of
        the oldest one still waiting for its head."""
        if self.open_count() >= self.max_connections:
            oldest = next(iter(self._waiting), None)
            if oldest is None or oldest.opened > waiting.opened - EVICT_AFTER:
                self.log.refused(
                    Refusal.MAX_CONNECTIONS,
                    f"{self.max_connections} connections open (max_connections),"
                    f" none waiting for its request head; first from {waiting.peer}",
                )
                return False
            self.log.refused(
                Refusal.EVICTED,
                f"{self.max_connections} connections open (max_connections): closed the"
                f" oldest still waiting for its request head ({oldest.peer})"
                " to let a new one in",
            )
            oldest.close()
        self._waiting[waiting] = None
        if waiting.transport is not None:
            self._open[waiting.transport] = None
        return True

    def forget(self, waiting: _Waiting) -> None:
        self._waiting.pop(waiting, None)


class _Waiting(asyncio.Protocol):
    """One connection until its first request head is complete: passes everything to
    its ``RequestHandler``, then hands the transport over to it."""

    __slots__ = ("_guard", "_handler", "_heard", "_tail", "_timer", "_transport", "opened")

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._handler: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._heard = False
        self.opened = time.monotonic()

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def peer(self) -> Any:
        return None if self._transport is None else self._transport.get_extra_info("peername")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        guard = self._guard
        if not guard.admit(self):
            self._transport.write(_BUSY)
            self._transport.close()
            return
        self._handler = guard.server()
        self._timer = asyncio.get_running_loop().call_later(guard.header_timeout, self._expire)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return  # refused: the transport is closing
        handler.data_received(data)
        if not self._heard:
            # a parser skips blank lines before a request line: they start no head
            data = data.lstrip(b"\r\n")
            if not data:
                return
        self._heard = True
        seen = self._tail + data
        if any(end in seen for end in _HEAD_ENDS):
            self._head_complete()
        else:
            self._tail = seen[-3:]

    def eof_received(self) -> bool | None:
        return None if self._handler is None else self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._handler is not None:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def close(self) -> None:
        """Close the connection (it was evicted); the handler hears of it as lost."""
        self._stop_waiting()
        if self._transport is not None:
            self._transport.close()

    def _head_complete(self) -> None:
        self._stop_waiting()
        if self._transport is not None and self._handler is not None:
            self._transport.set_protocol(self._handler)

    def _expire(self) -> None:
        self._timer = None
        reason = Refusal.HEADER_TIMEOUT if self._heard else Refusal.IDLE
        what = "a partial request head" if self._heard else "nothing"
        self._guard.log.refused(
            reason,
            f"sent {what} within header_timeout ({self._guard.header_timeout:g}s);"
            f" first from {self.peer}",
        )
        self.close()

    def _stop_waiting(self) -> None:
        self._guard.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose sites accept connections through a ``ConnectionGuard``,
    with the engine's ``keepalive_timeout`` and ``shutdown_timeout`` unless given.

    The app must hold its engine (``create_app``). Loop only.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        settings = app[ENGINE].settings
        kwargs.setdefault("keepalive_timeout", settings.keepalive_timeout)
        kwargs.setdefault("shutdown_timeout", settings.shutdown_timeout)
        kwargs.setdefault("lingering_time", LINGER)
        super().__init__(app, **kwargs)
        self._guard: ConnectionGuard | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        engine = self.app[ENGINE]
        self._guard = ConnectionGuard(server, engine.settings, engine.registry)
        return server

    @property
    def server(self) -> web.Server | None:
        # Sites only call it, as their protocol factory; shutdown uses the real server.
        return cast(web.Server | None, self._guard)
