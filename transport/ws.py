"""The realtime WebSocket endpoint (docs/protocol.md): one connection, one session.

The reader decodes each binary message, validates it, and hands frames to the
session's drain (waiting there under ``all``, which is how TCP pushes back on a fast
client). Answers come from the session's pump through ``WsConnection``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from actors.domain import Domain
from actors.plugins import FrameOut
from actors.sessions.drains import InboundFrame
from actors.sessions.messages import (
    Attach,
    Attachment,
    Call,
    Detach,
    SessionMessage,
    UpdateParams,
)
from actors.sessions.state import SessionState
from engine.errors import (
    ActorStopped,
    Conflict,
    EaselError,
    Forbidden,
    MailboxFull,
    NotFound,
    Unauthorized,
)
from engine.logcontext import log_context
from engine.ref import ActorRef
from engine.settings import Settings
from transport.auth import Principal, Role, authenticate, bearer_token, check, requires
from transport.browser import origin_allowed
from transport.keys import DOMAIN, ENGINE
from transport.problem import problem_response
from transport.protocol import (
    SUBPROTOCOL,
    CloseCode,
    ContentType,
    DrainStrategy,
    ErrorCode,
    EventName,
    FrameTimings,
    Hello,
    InputFrame,
    Limits,
    ParamsUpdate,
    ProtocolViolation,
    ViolationCounter,
    decode_client,
    encode_error,
    encode_event,
    encode_exception,
    encode_reply,
    encode_reply_error,
    encode_result,
    encode_welcome,
    error_for,
)
from transport.protocol import Call as CallFrame

__all__ = ["routes"]

log = logging.getLogger(__name__)

SessionRef = ActorRef[SessionMessage, Any]

routes = web.RouteTableDef()


CLOSE_TIMEOUT = 5.0
"""Seconds a goodbye (last ERROR, CLOSE) may wait for a client that reads nothing."""


async def _goodbye(
    ws: web.WebSocketResponse,
    transport: asyncio.Transport | None,
    code: int,
    reason: bytes,
    last: bytes | None = None,
) -> None:
    """Send ``last`` (if any) and close. A client that stopped reading (its buffers
    full) would hold those writes forever; after ``CLOSE_TIMEOUT`` the socket is
    aborted instead, so a session, a handler or a shutdown never waits on it."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            if last is not None and not ws.closed:
                await ws.send_bytes(last)
            await ws.close(code=code, message=reason)
    except (TimeoutError, ConnectionError):
        if transport is not None:
            transport.abort()


class WsConnection:
    """A session's client, over one WebSocket. Loop only."""

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None = None
    ) -> None:
        self.ws = ws
        self.transport = transport

    async def _send(self, data: bytes) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_bytes(data)
            except ConnectionError:
                pass  # the reader sees the closed socket and detaches

    async def send_result(
        self,
        seq: int,
        out: FrameOut,
        timings: FrameTimings,
        superseded: int,
        credit: int | None = None,
    ) -> None:
        await self._send(
            encode_result(
                seq,
                ContentType(out.content_type),
                out.payload,
                timings=timings,
                superseded=superseded,
                w=out.width,
                h=out.height,
                credit=credit,
            )
        )

    async def send_error(
        self, error: EaselError, seq: int | None = None, fatal: bool = False
    ) -> None:
        await self._send(encode_exception(error, seq=seq, fatal=fatal))

    async def send_event(self, name: str, data: dict[str, Any]) -> None:
        await self._send(encode_event(EventName(name), data))

    async def close(self, code: int, reason: str) -> None:
        await _goodbye(self.ws, self.transport, code, reason.encode())


def _limits(settings: Settings, record: SessionState | None = None) -> Limits:
    inflight = settings.max_inflight if record is None else record.max_inflight(settings)
    return Limits(
        max_frame=settings.max_frame, max_header=settings.max_header, max_inflight=inflight
    )


def _offers_v1(request: web.Request) -> bool:
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return SUBPROTOCOL in {part.strip() for part in offered.split(",")}


async def _upgrade(request: web.Request) -> web.WebSocketResponse | web.Response:
    if not _offers_v1(request):
        return problem_response(
            400,
            "unsupported_version",
            "Unsupported protocol",
            f"offer the WebSocket subprotocol {SUBPROTOCOL!r}",
        )
    settings = request.app[ENGINE].settings
    if not origin_allowed(request, settings):
        log.warning("WebSocket refused: origin %r is not allowed", request.headers.get("Origin"))
        return problem_response(
            403, "forbidden_origin", "Origin not allowed", "this origin may not open sockets"
        )
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        compress=False,
        max_msg_size=settings.max_frame,
        heartbeat=30.0,
    )
    await ws.prepare(request)
    return ws


@routes.get("/api/v1/sessions/{session_id}/ws")
@requires(Role.CLIENT, socket=True)
async def session_ws(request: web.Request) -> web.StreamResponse:
    """Attach to an existing session (its token, or a key that owns it); WELCOME is
    sent on connect."""
    ws = await _upgrade(request)
    if not isinstance(ws, web.WebSocketResponse):
        return ws
    domain = request.app[DOMAIN]
    session_id = request.match_info["session_id"]
    try:
        try:
            record = domain.sessions.authenticate(session_id, bearer_token(request))
        except Unauthorized:  # an unknown id is 4404 whoever asks: ids are unguessable
            if request.app[ENGINE].settings.insecure and bearer_token(request) is not None:
                raise  # even with auth off, a session's wrong token is refused
            caller = await _caller(request)  # an API key opens the sessions it owns
            record = _owned(domain, caller, session_id)
    except EaselError as error:  # otherwise the store is unreachable: try again later
        return await _refuse(ws, request.transport, error, _close_code(error, CloseCode.INTERNAL))
    with log_context(session_id=record.id):
        await _serve(ws, domain, record, request.app[ENGINE].settings, request.transport)
    return ws


@routes.get("/api/v1/ws")
@requires(Role.CLIENT, socket=True)
async def hello_ws(request: web.Request) -> web.StreamResponse:
    """Create or resume a session with HELLO, then serve it."""
    ws = await _upgrade(request)
    if not isinstance(ws, web.WebSocketResponse):
        return ws
    domain = request.app[DOMAIN]
    settings = request.app[ENGINE].settings
    try:
        caller = await _caller(request)
    except EaselError as error:
        return await _refuse(ws, request.transport, error, _close_code(error, CloseCode.INTERNAL))
    try:
        message = await ws.receive(timeout=settings.hello_timeout)
    except TimeoutError:
        return await _refuse(
            ws, request.transport, ProtocolViolation(ErrorCode.BAD_FRAME, "no HELLO in time")
        )
    if message.type is not WSMsgType.BINARY:
        return await _refuse(
            ws, request.transport, ProtocolViolation(ErrorCode.BAD_FRAME, "send HELLO first")
        )
    try:
        hello = decode_client(message.data, _limits(settings))
        if not isinstance(hello, Hello):
            raise ProtocolViolation(ErrorCode.BAD_FRAME, "the first frame must be HELLO")
        record = await _session_for(domain, hello, caller)
    except (ProtocolViolation, EaselError) as error:
        return await _refuse(ws, request.transport, error, _close_code(error, CloseCode.POLICY))
    with log_context(session_id=record.id):
        await _serve(ws, domain, record, settings, request.transport)
    return ws


async def _caller(request: web.Request) -> Principal:
    """The API key on the upgrade request; it must be allowed sessions (client, admin)."""
    caller = await authenticate(request)
    check(caller, Role.CLIENT)
    return caller


def _owned(domain: Domain, caller: Principal, session_id: str) -> SessionState:
    """The session if ``caller`` owns it (admin owns all); ``NotFound`` otherwise."""
    record = domain.sessions.get(session_id)
    if not caller.owns(record.owner):
        raise NotFound(f"no session {session_id!r}")
    return record


async def _session_for(domain: Domain, hello: Hello, caller: Principal) -> SessionState:
    if hello.session is not None:
        record = domain.sessions.authenticate(hello.session, hello.resume)
        return _owned(domain, caller, record.id)
    return await domain.sessions.create(
        hello.pipeline or "passthrough",
        DrainStrategy(hello.drain or DrainStrategy.LATEST),
        hello.params or {},
        owner=caller.key_id,
    )


def _close_code(error: Exception, otherwise: int) -> int:
    """The close code for refusing a connection because of ``error``."""
    if isinstance(error, ProtocolViolation):
        return error.close or CloseCode.POLICY
    if isinstance(error, NotFound):
        return CloseCode.UNKNOWN_SESSION
    if isinstance(error, (Unauthorized, Forbidden)):
        return CloseCode.POLICY
    return otherwise


async def _refuse(
    ws: web.WebSocketResponse,
    transport: asyncio.Transport | None,
    error: Exception,
    close: int = CloseCode.POLICY,
) -> web.WebSocketResponse:
    """Say why with one fatal ERROR, then close with ``close``."""
    if isinstance(error, ProtocolViolation):
        last = encode_error(error.code, error.message, fatal=True)
    else:
        last = encode_exception(error, fatal=True)
    await _goodbye(ws, transport, close, str(error).encode()[:120], last)
    return ws


async def _serve(
    ws: web.WebSocketResponse,
    domain: Domain,
    record: SessionState,
    settings: Settings,
    transport: asyncio.Transport | None,
) -> None:
    connection = WsConnection(ws, transport)
    ref = domain.sessions.ref(record.id)
    try:
        attachment: Attachment = await ref.ask(Attach(connection))
    except Conflict as error:
        await _refuse(ws, transport, Forbidden(error.message), CloseCode.ALREADY_ATTACHED)
        return
    except (ActorStopped, NotFound) as error:
        await _refuse(ws, transport, error, CloseCode.UNKNOWN_SESSION)
        return
    limits = _limits(settings, record)
    domain.metrics.connections.inc()
    log.info("session %s: connection attached", record.id)
    try:
        await ws.send_bytes(_welcome(record, limits, attachment.credit))
        await _Reader(ws, ref, attachment, limits, transport).run()
    except ConnectionError:
        pass  # the socket closed while we were answering on it: the client is gone
    finally:
        domain.metrics.connections.dec()
        await _detach(ref, connection)
        log.info("session %s: connection detached (close code %s)", record.id, ws.close_code)


async def _detach(ref: SessionRef, connection: WsConnection) -> None:
    """Tell the session its client is gone. A full mailbox is retried for a while: a
    lost Detach would leave the session attached to a dead socket."""
    for _ in range(100):
        try:
            ref.tell(Detach(connection))
        except MailboxFull:
            await asyncio.sleep(0.02)
        except EaselError:
            return  # the session is gone already
        else:
            return
    log.error("session %s: could not detach its closed connection", ref.path)


def _welcome(record: SessionState, limits: Limits, credit: int | None) -> bytes:
    return encode_welcome(
        session=record.id,
        resume=record.token,
        pipeline=record.pipeline,
        drain=DrainStrategy(record.drain),
        params=record.params,
        limits=limits,
        credit=credit,
    )


class _Reader:
    """Reads one attached connection until it closes: one handler per message type.

    Frames go into the session's drain (waiting there under ``all``); control
    messages (params, CALL, a first HELLO) are asks to the session actor. Malformed
    input is answered with an ERROR and counted; enough in a row close the socket.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        ref: SessionRef,
        attachment: Attachment,
        limits: Limits,
        transport: asyncio.Transport | None,
    ) -> None:
        self.ws = ws
        self.ref = ref
        self.attachment = attachment
        self.limits = limits
        self.transport = transport
        self.violations = ViolationCounter()
        self.last_seq = -1
        self.first = True

    async def run(self) -> None:
        submit = self.attachment.submit
        async for message in self.ws:
            received = time.perf_counter()
            try:
                if message.type is WSMsgType.BINARY:
                    decoded = decode_client(message.data, self.limits)
                    if isinstance(decoded, InputFrame):  # the hot path: no extra coroutine
                        await submit(self._inbound(decoded, received))
                    else:
                        await self._control(decoded)
                elif message.type is WSMsgType.TEXT:
                    raise ProtocolViolation(ErrorCode.BINARY_ONLY, "frames are binary messages")
            except ProtocolViolation as violation:
                if await self._violated(violation):
                    return
            except EaselError as error:  # the session ended under us
                last = encode_exception(error, fatal=True)
                await _goodbye(self.ws, self.transport, CloseCode.NORMAL, b"session closed", last)
                return

    def _inbound(self, frame: InputFrame, received: float) -> InboundFrame:
        """The frame as the session takes it; its ``seq`` must increase."""
        self.first = False
        if frame.seq <= self.last_seq:
            raise ProtocolViolation(
                ErrorCode.BAD_FRAME,
                f"seq must increase (got {frame.seq} after {self.last_seq})",
                seq=frame.seq,
            )
        self.last_seq = frame.seq
        self.violations.valid()
        return InboundFrame(
            frame.seq, frame.ct, frame.w, frame.h, frame.payload, frame.params, received
        )

    async def _control(self, decoded: Hello | ParamsUpdate | CallFrame) -> None:
        first, self.first = self.first, False
        if isinstance(decoded, Hello):
            if not first:
                raise ProtocolViolation(
                    ErrorCode.BAD_FRAME, "HELLO is only valid as the first frame"
                )
            await self._hello(decoded)
        elif isinstance(decoded, ParamsUpdate):
            self.violations.valid()
            await self._params(decoded.params)
        else:
            self.violations.valid()
            await self._call(decoded)

    async def _hello(self, hello: Hello) -> None:
        """A HELLO as the first frame on a session's own endpoint: apply its params
        and confirm with a fresh WELCOME."""
        self.violations.valid()
        if hello.params and not await self._params(hello.params):
            return
        attachment = self.attachment
        await self.ws.send_bytes(_welcome(attachment.state, self.limits, attachment.credit))

    async def _params(self, params: dict[str, Any]) -> bool:
        """Merge ``params`` into the session's; bad ones get an ERROR, not the end."""
        try:
            await self.ref.ask(UpdateParams(params))
        except EaselError as error:
            await self.ws.send_bytes(encode_exception(error))
            return False
        return True

    async def _call(self, call: CallFrame) -> None:
        try:
            result = await self.ref.ask(Call(str(call.method), call.args))
        except EaselError as error:
            code, text = error_for(error)
            await self.ws.send_bytes(encode_reply_error(call.id, code, text))
        else:
            await self.ws.send_bytes(encode_reply(call.id, result))

    async def _violated(self, violation: ProtocolViolation) -> bool:
        """Answer ``violation``; True when the connection must end because of it."""
        await self.ws.send_bytes(violation.encode())
        if violation.close is not None:
            await self.ws.close(code=violation.close, message=violation.message.encode())
            return True
        if self.violations.violation():
            await self.ws.close(code=CloseCode.POLICY, message=b"too many protocol violations")
            return True
        return False
