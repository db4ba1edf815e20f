"""An asyncio client for the Easel realtime protocol v1, on aiohttp.

Used by the tests, the benchmark and the CLI; third-party code may use it too::

    async with await Client.connect("http://localhost:8080", token=t, session=s) as c:
        await c.send_frame(0, ContentType.JPEG, jpeg_bytes)
        async for answer in c.results():
            ...

Incoming frames are read by one background task and routed: REPLY to the :meth:`call`
waiting on its ``id``, EVENT to :meth:`events`, RESULT and ERROR to :meth:`receive`
and :meth:`results`. Those two queues are unbounded: the server sends at most one
answer per frame sent, so the caller bounds them by what it sends.

**Credits.** When the server grants a window (WELCOME/RESULT ``credit``, see the
protocol's Credits section) the client counts its outstanding frames: ``may_send``
says whether one more fits, :meth:`wait_for_credit` waits until it does, and
:meth:`offer` paces a ``latest`` session: it sends a frame when the window allows and
otherwise keeps it (the newest replacing an older one kept, which is never sent)
until an answer frees a place. ``send_frame`` ignores credits, as old clients do.

Every method runs on the event loop that called :meth:`Client.connect`; a client is
not thread-safe. Errors::

    ClientError
    ├── HandshakeError      the upgrade was refused, or no WELCOME came
    ├── ServerError         an ERROR frame or a REPLY error (``code``, ``message``, ``seq``)
    └── ConnectionClosed    the connection is gone (``code`` is the close code)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from transport.client_frames import (
    ClientError,
    ConnectionClosed,
    Event,
    HandshakeError,
    Result,
    ServerError,
    Welcome,
    credit_of,
)
from transport.protocol import (
    DEFAULT_LIMITS,
    SUBPROTOCOL,
    CloseCode,
    ContentType,
    DrainStrategy,
    ErrorCode,
    Frame,
    FrameType,
    Limits,
    ProtocolViolation,
    decode,
    encode_call,
    encode_frame,
    encode_hello,
    encode_params,
)

__all__ = [
    "Client",
    "ClientError",
    "ConnectionClosed",
    "Event",
    "HandshakeError",
    "Result",
    "ServerError",
    "Welcome",
]

CLIENT_NAME = "easel-py/1"


def ws_path(session: str | None) -> str:
    """The endpoint: the session's own, or the one where HELLO picks the session."""
    return "/api/v1/ws" if session is None else f"/api/v1/sessions/{quote(session, safe='')}/ws"


class Client:
    """One WebSocket connection to one session. Create it with :meth:`connect`."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        welcome: Welcome,
        *,
        limits: Limits,
        http: aiohttp.ClientSession | None,
    ) -> None:
        self.welcome = welcome
        self._ws = ws
        self._limits = limits
        self._http = http  # owned: closed with the client
        self._answers: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._events: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._call_ids = itertools.count(1)
        self._failure: BaseException | None = None
        self.credit: int | None = welcome.credit
        """The window last granted, ``None`` if the server grants none."""
        self.outstanding = 0
        """Frames sent and not yet answered or reported superseded."""
        self.kept = 0
        """Frames :meth:`offer` kept and then replaced by a newer one: never sent."""
        self._credit_freed = asyncio.Event()
        self._kept: bytes | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        base_url: str,
        *,
        token: str,
        session: str | None = None,
        hello: bool | None = None,
        resume: str | None = None,
        pipeline: str | None = None,
        drain: DrainStrategy | None = None,
        params: Mapping[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        http: aiohttp.ClientSession | None = None,
        handshake_timeout: float = 10.0,
    ) -> Client:
        """Open ``base_url`` + the WebSocket endpoint and wait for WELCOME.

        ``session`` picks ``/api/v1/sessions/{session}/ws``; without it the client
        connects to ``/api/v1/ws`` and HELLO creates the session. HELLO is sent when
        ``hello`` is true, or when it is ``None`` and there is no ``session`` or any of
        ``resume``, ``pipeline``, ``drain``, ``params`` is given. ``http`` is borrowed
        if passed; otherwise the client makes its own session and closes it.

        Raises :class:`HandshakeError` (refused upgrade, wrong subprotocol, no WELCOME
        within ``handshake_timeout`` seconds), :class:`ServerError` (ERROR instead of WELCOME) or
        :class:`ConnectionClosed` (closed instead of WELCOME, e.g. 4404).
        """
        if hello is None:
            hello = session is None or any(v is not None for v in (resume, pipeline, drain, params))
        owned = http is None
        client_session = aiohttp.ClientSession() if http is None else http
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            try:
                ws = await client_session.ws_connect(
                    base_url.rstrip("/") + ws_path(session),
                    protocols=(SUBPROTOCOL,),
                    headers={"Authorization": f"Bearer {token}"},
                    compress=0,
                    max_msg_size=limits.max_frame,
                    timeout=aiohttp.ClientWSTimeout(ws_close=handshake_timeout),
                )
            except aiohttp.WSServerHandshakeError as exc:
                raise HandshakeError(f"upgrade refused: {exc.message}", status=exc.status) from exc
            if ws.protocol != SUBPROTOCOL:
                raise HandshakeError(f"server selected subprotocol {ws.protocol!r}")
            if hello:
                await ws.send_bytes(
                    encode_hello(
                        client=CLIENT_NAME,
                        session=session,
                        resume=resume,
                        pipeline=pipeline,
                        drain=drain,
                        params=params,
                    )
                )
            welcome = await asyncio.wait_for(_await_welcome(ws, limits), handshake_timeout)
        except BaseException as exc:
            if ws is not None:
                await ws.close()
            if owned:
                await client_session.close()
            if isinstance(exc, TimeoutError):
                raise HandshakeError(f"no WELCOME within {handshake_timeout} s") from exc
            raise
        return cls(ws, welcome, limits=limits, http=client_session if owned else None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send_frame(
        self,
        seq: int,
        ct: ContentType,
        payload: bytes | memoryview,
        *,
        w: int | None = None,
        h: int | None = None,
        ts: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Send one FRAME; its answer arrives through :meth:`receive`/:meth:`results`.

        Raises ``ValueError`` if the message exceeds the server's ``max_frame`` (the
        server would close with 1009) and :class:`ConnectionClosed` once closed.
        """
        await self._send_frame(self._frame(seq, ct, payload, w=w, h=h, ts=ts, params=params))

    def _frame(
        self,
        seq: int,
        ct: ContentType,
        payload: bytes | memoryview,
        *,
        w: int | None = None,
        h: int | None = None,
        ts: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> bytes:
        data = encode_frame(seq, ct, payload, w=w, h=h, ts=ts, params=params)
        if len(data) > self.welcome.limits.max_frame:
            raise ValueError(
                f"frame of {len(data)} bytes exceeds max_frame {self.welcome.limits.max_frame}"
            )
        return data

    async def _send_frame(self, data: bytes) -> None:
        self.outstanding += 1
        await self._send(data)

    @property
    def may_send(self) -> bool:
        """Whether one more frame fits in the granted window (always, without one)."""
        return self.credit is None or self.outstanding < self.credit

    async def wait_for_credit(self) -> None:
        """Return once ``may_send``; raises :class:`ConnectionClosed` when closed."""
        while not self.may_send:
            if self.closed:
                raise ConnectionClosed(self._ws.close_code)
            self._credit_freed.clear()
            await self._credit_freed.wait()

    async def offer(
        self,
        seq: int,
        ct: ContentType,
        payload: bytes | memoryview,
        *,
        w: int | None = None,
        h: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> bool:
        """Send a FRAME if the window allows (True); otherwise keep it (False) and send
        it when an answer frees a place, unless a newer offer replaces it first (then
        it is never sent and counts in ``kept``). For ``latest`` sessions: the server
        then rarely has anything to supersede. ``seq`` must still increase."""
        data = self._frame(seq, ct, payload, w=w, h=h, params=params)
        if self._kept is None and self.may_send:
            await self._send_frame(data)
            return True
        if self._kept is not None:
            self.kept += 1
        self._kept = data
        return False

    @property
    def holding(self) -> bool:
        """Whether :meth:`offer` keeps a frame waiting for credit."""
        return self._kept is not None

    async def _credit_changed(self) -> None:
        kept = self._kept
        if kept is not None and self.may_send:
            self._kept = None
            with contextlib.suppress(ConnectionClosed, ConnectionError):
                await self._send_frame(kept)
        self._credit_freed.set()

    async def set_params(self, params: Mapping[str, Any]) -> None:
        """Send PARAMS: merged into the session's params for the following frames."""
        await self._send(encode_params(params))

    async def call(self, method: str, args: Mapping[str, Any] | None = None) -> Any:
        """Send CALL and return the REPLY ``result``; bound it with ``asyncio.timeout``.

        Raises :class:`ServerError` for a REPLY ``error`` (``not_found`` for a method
        the server does not know) and :class:`ConnectionClosed` when closed.
        """
        call_id = next(self._call_ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = reply
        try:
            await self._send(encode_call(call_id, method, args))
            return await reply
        finally:
            self._calls.pop(call_id, None)

    async def receive(self) -> Frame:
        """The next RESULT or ERROR frame; raises :class:`ConnectionClosed` when closed."""
        return await self._next(self._answers)

    async def results(self) -> AsyncIterator[Result | ServerError]:
        """Answers to sent frames, in arrival order, until the connection closes.

        A non-fatal ERROR (e.g. ``pipeline_error`` for one ``seq``) is *yielded* as a
        :class:`ServerError` so one failed frame does not end the stream; a fatal
        one is raised.
        """
        while True:
            try:
                frame = await self.receive()
            except ConnectionClosed:
                return
            if frame.type is FrameType.RESULT:
                yield Result.from_frame(frame)
                continue
            error = ServerError.from_frame(frame)
            if error.fatal:
                raise error
            yield error

    async def next_event(self) -> Event:
        """The next EVENT; raises :class:`ConnectionClosed` when closed."""
        frame = await self._next(self._events)
        data = frame.header.get("data")
        return Event(str(frame.header.get("event", "")), data if isinstance(data, dict) else {})

    async def events(self) -> AsyncIterator[Event]:
        """EVENTs in arrival order until the connection closes."""
        while True:
            try:
                yield await self.next_event()
            except ConnectionClosed:
                return

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close the connection (idempotent) and the HTTP session if the client owns it."""
        await self._ws.close(code=code)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self._http is not None:
            await self._http.close()

    async def _send(self, data: bytes) -> None:
        if self._ws.closed:
            raise ConnectionClosed(self._ws.close_code)
        await self._ws.send_bytes(data)

    async def _next(self, queue: asyncio.Queue[Frame | None]) -> Frame:
        frame = await queue.get()
        if frame is None:
            queue.put_nowait(None)  # every later reader sees the end too
            raise ConnectionClosed(self._ws.close_code) from self._failure
        return frame

    async def _read(self) -> None:
        """Route every incoming frame until the connection closes (background task)."""
        try:
            async for message in self._ws:
                if message.type is aiohttp.WSMsgType.ERROR:
                    self._failure = message.data
                    break
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise ProtocolViolation(ErrorCode.BINARY_ONLY, "server sent a text message")
                frame = decode(message.data, self._limits)
                if frame.type is FrameType.REPLY:
                    self._resolve(frame)
                elif frame.type is FrameType.EVENT:
                    self._events.put_nowait(frame)
                else:
                    self._answers.put_nowait(frame)
                    if self._account(frame):
                        await self._credit_changed()
        except ProtocolViolation as exc:
            self._failure = exc
            await self._ws.close(code=CloseCode.POLICY)
        finally:
            self._answers.put_nowait(None)
            self._events.put_nowait(None)
            self._credit_freed.set()
            for reply in self._calls.values():
                if not reply.done():
                    reply.set_exception(ConnectionClosed(self._ws.close_code))

    def _account(self, frame: Frame) -> bool:
        """Count an answer against the window; whether the window may have room now."""
        h = frame.header
        if frame.type is FrameType.RESULT:
            superseded = h.get("superseded", 0)
            done = 1 + (superseded if type(superseded) is int and superseded > 0 else 0)
            credit = credit_of(h)
            if credit is not None:
                self.credit = credit
        elif frame.type is FrameType.ERROR and type(h.get("seq")) is int:
            done = 1
        else:
            return False
        self.outstanding = max(0, self.outstanding - done)
        return True

    def _resolve(self, frame: Frame) -> None:
        call_id = frame.header.get("id")
        reply = self._calls.get(call_id) if type(call_id) is int else None
        if reply is None or reply.done():
            return  # a late answer to a call that timed out
        error = frame.header.get("error")
        if isinstance(error, dict):
            reply.set_exception(
                ServerError(str(error.get("code", "internal")), str(error.get("message", "")))
            )
        else:
            reply.set_result(frame.header.get("result"))


async def _await_welcome(ws: aiohttp.ClientWebSocketResponse, limits: Limits) -> Welcome:
    """Read until WELCOME; an ERROR or a close before it is raised."""
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.BINARY:
            break
        frame = decode(message.data, limits)
        if frame.type is FrameType.WELCOME:
            return Welcome.from_frame(frame)
        if frame.type is FrameType.ERROR:
            raise ServerError.from_frame(frame)
    raise ConnectionClosed(ws.close_code)
