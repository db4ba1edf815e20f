"""The frame envelope (encode, decode), the violation error, and every frame builder."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from engine.errors import (
    ActorStopped,
    AskTimeout,
    EaselError,
    Invalid,
    Unavailable,
    Undeliverable,
)
from engine.types import DrainStrategy, FrameTimings
from transport.protocol._types import (
    DEFAULT_LIMITS,
    ERROR_CODES,
    FRAME_TYPES,
    MAGIC,
    PRELUDE_SIZE,
    VERSION,
    CloseCode,
    ContentType,
    ErrorCode,
    EventName,
    FrameType,
    Limits,
    is_str_map,
    member,
)

_PRELUDE: Final = struct.Struct(">BBBBI")


class ProtocolViolation(Exception):
    """A client broke protocol v1; raised by decoding and parsing, never anything else.

    ``code`` is the :class:`ErrorCode`; ``seq`` the offending FRAME's when known;
    ``close`` the close code when the connection must close (only ``too_large``
    messages: 1009); ``call_id`` the CALL's id when the answer is a REPLY error.
    Send :meth:`encode` and count it on the connection's :class:`ViolationCounter`.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        seq: int | None = None,
        close: CloseCode | None = None,
        call_id: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq
        self.close = close
        self.call_id = call_id

    @property
    def fatal(self) -> bool:
        return self.close is not None

    def encode(self) -> bytes:
        """The answer to send: a REPLY error inside a known CALL, else an ERROR frame."""
        if self.call_id is not None:
            return encode_reply_error(self.call_id, self.code, self.message)
        return encode_error(self.code, self.message, seq=self.seq, fatal=self.fatal)


class Frame:
    """One decoded frame. ``payload`` is a zero-copy view into the received message."""

    __slots__ = ("header", "payload", "type")

    def __init__(self, type: FrameType, header: dict[str, Any], payload: memoryview) -> None:
        self.type = type
        self.header = header
        self.payload = payload

    def __repr__(self) -> str:
        return f"Frame({self.type.name}, {self.header!r}, <{self.payload.nbytes} bytes>)"


class ViolationCounter:
    """Consecutive violations on one connection; the 16th means close with 1008.

    One per connection, used from that connection's handler on the event loop.
    """

    __slots__ = ("count", "limit")

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self.count = 0

    def violation(self) -> bool:
        """Record a violation; ``True`` when the connection must now close (1008)."""
        self.count += 1
        return self.count >= self.limit

    def valid(self) -> None:
        """Record a valid frame: the run of violations is broken."""
        self.count = 0


def encode(type: FrameType, header: Mapping[str, Any], payload: bytes | memoryview = b"") -> bytes:
    """One frame as bytes; an empty header is sent as ``header_len`` 0.

    Raises ``TypeError`` or ``OverflowError`` (from msgpack) for a header value msgpack
    cannot carry, such as an integer outside the 64-bit range.
    """
    packed = msgpack.packb(header if isinstance(header, dict) else dict(header)) if header else b""
    return b"".join((_PRELUDE.pack(MAGIC, VERSION, type, 0, len(packed)), packed, payload))


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decode one message (a contiguous buffer); the payload stays a view of ``data``.

    Raises :class:`ProtocolViolation` (only) when the message breaks the envelope rules.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    size = view.nbytes
    if size > limits.max_frame:
        raise ProtocolViolation(
            ErrorCode.TOO_LARGE,
            f"message of {size} bytes exceeds max_frame {limits.max_frame}",
            close=CloseCode.TOO_LARGE,
        )
    if size < PRELUDE_SIZE:
        raise ProtocolViolation(ErrorCode.BAD_FRAME, f"message of {size} bytes has no prelude")
    magic, version, type_byte, _flags, header_len = _PRELUDE.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolViolation(ErrorCode.BAD_FRAME, f"bad magic 0x{magic:02x}")
    if version != VERSION:
        raise ProtocolViolation(ErrorCode.UNSUPPORTED_VERSION, f"unsupported version {version}")
    type_ = FRAME_TYPES.get(type_byte)
    if type_ is None:
        raise ProtocolViolation(ErrorCode.UNKNOWN_TYPE, f"unknown frame type 0x{type_byte:02x}")
    if header_len > limits.max_header:
        raise ProtocolViolation(
            ErrorCode.TOO_LARGE, f"header of {header_len} bytes exceeds {limits.max_header}"
        )
    end = PRELUDE_SIZE + header_len
    if end > size:
        raise ProtocolViolation(
            ErrorCode.TOO_LARGE, f"header_len {header_len} runs past the {size}-byte message"
        )
    header = _unpack_header(view[PRELUDE_SIZE:end]) if header_len else {}
    return Frame(type_, header, view[end:])


def _unpack_header(region: memoryview) -> dict[str, Any]:
    # No container or string can be longer than the region holding it, so capping
    # every length at its size stops a hostile header from claiming huge allocations.
    n = region.nbytes
    try:
        header = msgpack.unpackb(
            region,
            raw=False,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=n,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ExtraData (trailing bytes in the header region) is a ValueError too.
        raise ProtocolViolation(ErrorCode.BAD_FRAME, f"header is not msgpack: {exc}") from None
    if not is_str_map(header):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "header must be a map with string keys")
    return header


def _header(**fields: Any) -> dict[str, Any]:
    """A header from keyword fields, leaving out the ones that are ``None``."""
    return {k: v for k, v in fields.items() if v is not None}


def encode_hello(
    *,
    client: str | None = None,
    session: str | None = None,
    resume: str | None = None,
    pipeline: str | None = None,
    drain: DrainStrategy | None = None,
    params: Mapping[str, Any] | None = None,
) -> bytes:
    header = _header(
        proto=VERSION,
        client=client,
        session=session,
        resume=resume,
        pipeline=pipeline,
        drain=drain,
        params=None if params is None else dict(params),
    )
    return encode(FrameType.HELLO, header)


def encode_welcome(
    *,
    session: str,
    resume: str,
    pipeline: str,
    drain: DrainStrategy,
    params: Mapping[str, Any],
    limits: Limits,
    credit: int | None = None,
) -> bytes:
    header: dict[str, Any] = {
        "session": session,
        "resume": resume,
        "pipeline": pipeline,
        "drain": drain,
        "params": dict(params),
        "limits": limits.to_header(),
    }
    if credit is not None:
        header["credit"] = credit
    return encode(FrameType.WELCOME, header)


def encode_frame(
    seq: int,
    ct: ContentType,
    payload: bytes | memoryview,
    *,
    w: int | None = None,
    h: int | None = None,
    ts: float | None = None,
    params: Mapping[str, Any] | None = None,
) -> bytes:
    header = _header(
        seq=seq,
        ct=ct,
        w=w,
        h=h,
        ts=None if ts is None else float(ts),
        params=None if params is None else dict(params),
    )
    return encode(FrameType.FRAME, header, payload)


def encode_result(
    seq: int,
    ct: ContentType,
    payload: bytes | memoryview,
    *,
    timings: FrameTimings,
    superseded: int = 0,
    w: int | None = None,
    h: int | None = None,
    credit: int | None = None,
) -> bytes:
    # built by hand: one RESULT per answered frame, the hottest encoder
    header: dict[str, Any] = {"seq": seq, "ct": ct}
    if w is not None:
        header["w"] = w
    if h is not None:
        header["h"] = h
    header["t"] = timings.to_header()
    header["superseded"] = superseded
    if credit is not None:
        header["credit"] = credit
    return encode(FrameType.RESULT, header, payload)


def encode_params(params: Mapping[str, Any]) -> bytes:
    return encode(FrameType.PARAMS, {"params": dict(params)})


def encode_call(call_id: int | str, method: str, args: Mapping[str, Any] | None = None) -> bytes:
    return encode(FrameType.CALL, {"id": call_id, "method": method, "args": dict(args or {})})


def encode_reply(call_id: int | str, result: Any) -> bytes:
    return encode(FrameType.REPLY, {"id": call_id, "result": result})


def encode_reply_error(call_id: int | str, code: ErrorCode, message: str) -> bytes:
    return encode(FrameType.REPLY, {"id": call_id, "error": {"code": code, "message": message}})


def encode_event(event: EventName, data: Mapping[str, Any] | None = None) -> bytes:
    return encode(FrameType.EVENT, {"event": event, "data": dict(data or {})})


def encode_error(
    code: ErrorCode, message: str, *, seq: int | None = None, fatal: bool = False
) -> bytes:
    return encode(FrameType.ERROR, _header(code=code, message=message, seq=seq, fatal=fatal))


# Engine errors a client can retry, though their codes are not protocol codes.
_TRANSIENT: Final = (Unavailable, ActorStopped, AskTimeout, Undeliverable)


def error_for(exc: BaseException) -> tuple[ErrorCode, str]:
    """The protocol code and a client-safe message for any exception.

    An :class:`~engine.errors.EaselError` keeps its code when protocol v1 has it;
    otherwise ``Invalid`` becomes ``bad_params``, transient failures (unavailable,
    stopped actor, ask timeout, undeliverable) ``overloaded`` and the rest
    ``internal``. Only an ``EaselError``'s message reaches the client: any other
    exception's text may hold internals.
    """
    if not isinstance(exc, EaselError):
        return ErrorCode.INTERNAL, "internal error"
    code = member(ERROR_CODES, exc.code)
    if code is None:
        if isinstance(exc, Invalid):
            code = ErrorCode.BAD_PARAMS
        elif isinstance(exc, _TRANSIENT):
            code = ErrorCode.OVERLOADED
        else:
            code = ErrorCode.INTERNAL
    return code, exc.message


def encode_exception(exc: BaseException, *, seq: int | None = None, fatal: bool = False) -> bytes:
    """ERROR for an exception, through :func:`error_for`."""
    code, message = error_for(exc)
    return encode_error(code, message, seq=seq, fatal=fatal)
