"""The Easel realtime protocol, version 1: the binary WebSocket frame codec.

``PROTOCOL.md`` is the contract; this module implements it and nothing more. Every
WebSocket message carries one frame::

    magic 0xEA | version 1 | type | flags | header_len (u32 BE) | msgpack header | payload

:func:`encode` and :func:`decode` handle the envelope; the ``parse_*`` functions turn a
decoded client frame into a frozen, validated view (:class:`Hello`, :class:`InputFrame`,
:class:`ParamsUpdate`, :class:`Call`); the ``encode_*`` builders produce every frame.
Everything here is pure (no I/O, no shared state): call it from the event loop or
any thread.

Every rule a client breaks raises :class:`ProtocolViolation` and nothing else, with a
code from :class:`ErrorCode`:

=====================  ===============================================================
``bad_frame``          short prelude, bad magic, header not a msgpack map with string
                       keys, a header field of the wrong type, a server→client type
                       sent by a client
``unsupported_version``  prelude version ≠ 1, HELLO ``proto`` ≠ 1
``unknown_type``       a type byte this version does not define
``too_large``          message over ``max_frame`` (fatal: close 1009), header over
                       ``max_header``, or ``header_len`` running past the message
``bad_content``        unknown ``ct``, raw image without ``w``/``h`` or of the wrong
                       length, empty image payload
``bad_params``         ``params``/``args`` not a map with string keys
``not_found``          CALL of a method version 1 does not define
=====================  ===============================================================

A violation that happens inside a CALL whose ``id`` is known (unknown method, bad
``args``) carries ``call_id`` and is answered with a REPLY ``error``, so the caller
waiting on that id hears about it; every other violation is answered with ERROR.
:meth:`ProtocolViolation.encode` picks the right one. Either way it counts towards
the 16 consecutive violations (:class:`ViolationCounter`) after which the server
closes with 1008.

Not checked here, because they need connection state: ``seq`` increasing, and
which frame may come first; the WebSocket handler owns those.

``ProtocolViolation`` is deliberately not an :class:`engine.errors.EaselError`: it is
about bytes on one connection, never crosses into the actors, and its code is
per instance where ``EaselError.code`` is per class.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeGuard, TypeVar

import msgpack

__all__ = [
    "DEFAULT_LIMITS",
    "MAGIC",
    "PRELUDE_SIZE",
    "SUBPROTOCOL",
    "VERSION",
    "Call",
    "CallMethod",
    "ClientMessage",
    "CloseCode",
    "ContentType",
    "Drain",
    "ErrorCode",
    "EventName",
    "Frame",
    "FrameType",
    "Hello",
    "InputFrame",
    "Limits",
    "ParamsUpdate",
    "ProtocolViolation",
    "Timings",
    "ViolationCounter",
    "decode",
    "decode_client",
    "encode",
    "encode_call",
    "encode_error",
    "encode_event",
    "encode_frame",
    "encode_hello",
    "encode_params",
    "encode_reply",
    "encode_reply_error",
    "encode_result",
    "encode_welcome",
    "parse_call",
    "parse_client",
    "parse_frame",
    "parse_hello",
    "parse_params",
]

MAGIC: Final = 0xEA
VERSION: Final = 1
SUBPROTOCOL: Final = "easel.v1"
PRELUDE_SIZE: Final = 8
_PRELUDE: Final = struct.Struct(">BBBBI")


_E = TypeVar("_E", bound=IntEnum | StrEnum)


def _member(members: Mapping[object, _E], value: object) -> _E | None:
    # A dict lookup is ten times faster than calling the enum. Header values come from
    # msgpack: only an exact str or int can name a member, and others may be unhashable.
    return members.get(value) if type(value) is str or type(value) is int else None


def _is_uint(value: object) -> TypeGuard[int]:
    # bool is an int subclass; True is not a sequence number.
    return type(value) is int and value >= 0


def _is_str_map(value: object) -> TypeGuard[dict[str, Any]]:
    # msgpack's strict_map_key already limits keys to str or bytes, at every depth.
    return isinstance(value, dict) and bytes not in map(type, value)


class FrameType(IntEnum):
    HELLO = 0x01
    WELCOME = 0x02
    FRAME = 0x10
    RESULT = 0x11
    PARAMS = 0x20
    CALL = 0x30
    REPLY = 0x31
    EVENT = 0x40
    ERROR = 0x7F


class ErrorCode(StrEnum):
    """Every error code of protocol v1 (ERROR ``code`` and REPLY ``error.code``)."""

    BAD_FRAME = "bad_frame"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    BINARY_ONLY = "binary_only"
    TOO_LARGE = "too_large"
    BAD_PARAMS = "bad_params"
    BAD_CONTENT = "bad_content"
    PIPELINE_ERROR = "pipeline_error"
    OVERLOADED = "overloaded"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SESSION_CLOSED = "session_closed"
    NOT_FOUND = "not_found"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    UNKNOWN_SESSION = 4404
    ALREADY_ATTACHED = 4409


class ContentType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"
    RGB8 = "raw/rgb8"
    RGBA8 = "raw/rgba8"

    @property
    def channels(self) -> int | None:
        """Bytes per pixel of a raw type; ``None`` for an encoded image."""
        if self is ContentType.RGB8:
            return 3
        return 4 if self is ContentType.RGBA8 else None


class Drain(StrEnum):
    LATEST = "latest"
    ALL = "all"


class CallMethod(StrEnum):
    SESSION_STATS = "session.stats"
    SESSION_PARAMS = "session.params"
    PIPELINE_INFO = "pipeline.info"


class EventName(StrEnum):
    PIPELINE_RESTARTING = "pipeline.restarting"
    PIPELINE_READY = "pipeline.ready"
    SESSION_EXPIRING = "session.expiring"
    SESSION_CLOSED = "session.closed"
    STATS = "stats"


_FRAME_TYPES: Final[Mapping[object, FrameType]] = MappingProxyType({m: m for m in FrameType})
_CONTENT_TYPES: Final[Mapping[object, ContentType]] = MappingProxyType({m: m for m in ContentType})
_DRAINS: Final[Mapping[object, Drain]] = MappingProxyType({m: m for m in Drain})
_CALL_METHODS: Final[Mapping[object, CallMethod]] = MappingProxyType({m: m for m in CallMethod})


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes one connection accepts, announced in WELCOME ``limits``."""

    max_frame: int = 8 * 1024 * 1024
    max_header: int = 64 * 1024
    max_inflight: int = 8

    def __post_init__(self) -> None:
        for name in ("max_frame", "max_header", "max_inflight"):
            if not _is_uint(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")

    def to_header(self) -> dict[str, int]:
        return {
            "max_frame": self.max_frame,
            "max_header": self.max_header,
            "max_inflight": self.max_inflight,
        }

    @classmethod
    def from_header(cls, value: object) -> Limits:
        """Read WELCOME ``limits``; absent or malformed entries keep their defaults."""
        if not isinstance(value, dict):
            return cls()
        known = {k: v for k, v in value.items() if k in _LIMIT_KEYS and _is_uint(v) and v > 0}
        return cls(**known)


_LIMIT_KEYS: Final = frozenset({"max_frame", "max_header", "max_inflight"})
DEFAULT_LIMITS: Final = Limits()


class ProtocolViolation(Exception):
    """A client broke protocol v1. ``close`` is set when the connection must close."""

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


# --- envelope -------------------------------------------------------------------------


def encode(type: FrameType, header: Mapping[str, Any], payload: bytes | memoryview = b"") -> bytes:
    """One frame as bytes; an empty header is sent as ``header_len`` 0."""
    packed = msgpack.packb(header if isinstance(header, dict) else dict(header)) if header else b""
    return b"".join((_PRELUDE.pack(MAGIC, VERSION, type, 0, len(packed)), packed, payload))


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decode one message; the payload stays a view of ``data``.

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
    type_ = _FRAME_TYPES.get(type_byte)
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
    if not _is_str_map(header):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "header must be a map with string keys")
    return header


# --- client → server views ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: how the client wants its session set up; ``None`` means unspecified."""

    client: str | None = None
    session: str | None = None
    resume: str | None = None
    pipeline: str | None = None
    drain: Drain | None = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InputFrame:
    """FRAME: one image to process. ``payload`` is a zero-copy view."""

    seq: int
    ct: ContentType
    payload: memoryview
    w: int | None = None
    h: int | None = None
    ts: float | None = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ParamsUpdate:
    """PARAMS: to be merged into the session's params."""

    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """CALL: a request answered by one REPLY with the same ``id``."""

    id: int | str
    method: CallMethod
    args: dict[str, Any]


ClientMessage = Hello | InputFrame | ParamsUpdate | Call


def parse_hello(frame: Frame) -> Hello:
    h = frame.header
    proto = h.get("proto")
    if not _is_uint(proto) or proto != VERSION:
        raise ProtocolViolation(ErrorCode.UNSUPPORTED_VERSION, f"proto {proto!r} is not 1")
    drain = h.get("drain")
    if drain is not None and _member(_DRAINS, drain) is None:
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "drain must be 'latest' or 'all'")
    return Hello(
        client=_opt_str(h, "client"),
        session=_opt_str(h, "session"),
        resume=_opt_str(h, "resume"),
        pipeline=_opt_str(h, "pipeline"),
        drain=None if drain is None else Drain(drain),
        params=_opt_params(h.get("params")),
    )


def parse_frame(frame: Frame) -> InputFrame:
    h = frame.header
    seq = h.get("seq")
    if not _is_uint(seq):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "seq must be a non-negative integer")
    ct = _member(_CONTENT_TYPES, h.get("ct"))
    if ct is None:
        raise ProtocolViolation(
            ErrorCode.BAD_CONTENT, f"unknown content type {h.get('ct')!r}", seq=seq
        )
    size = frame.payload.nbytes
    w = h.get("w")
    hh = h.get("h")
    channels = ct.channels
    if channels is not None:
        if not (_is_uint(w) and _is_uint(hh) and w > 0 and hh > 0):
            raise ProtocolViolation(
                ErrorCode.BAD_CONTENT, f"{ct} needs positive integers w and h", seq=seq
            )
        if size != w * hh * channels:
            raise ProtocolViolation(
                ErrorCode.BAD_CONTENT,
                f"{ct} {w}x{hh} needs {w * hh * channels} bytes, got {size}",
                seq=seq,
            )
    else:
        w = hh = None  # only meaningful for raw content
        if size == 0:
            raise ProtocolViolation(ErrorCode.BAD_CONTENT, "empty image payload", seq=seq)
    ts = h.get("ts")
    if ts is not None and not (type(ts) in (int, float) and math.isfinite(ts)):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "ts must be a finite number", seq=seq)
    return InputFrame(
        seq=seq,
        ct=ct,
        payload=frame.payload,
        w=w,
        h=hh,
        ts=None if ts is None else float(ts),
        params=_opt_params(h.get("params"), seq=seq),
    )


def parse_params(frame: Frame) -> ParamsUpdate:
    params = _opt_params(frame.header.get("params"))
    if params is None:
        raise ProtocolViolation(ErrorCode.BAD_PARAMS, "PARAMS needs a params map")
    return ParamsUpdate(params)


def parse_call(frame: Frame) -> Call:
    h = frame.header
    call_id = h.get("id")
    if not (_is_uint(call_id) or type(call_id) is str):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "CALL id must be an integer or a string")
    method = _member(_CALL_METHODS, h.get("method"))
    if method is None:
        raise ProtocolViolation(
            ErrorCode.NOT_FOUND, f"unknown method {h.get('method')!r}", call_id=call_id
        )
    args = h.get("args")
    if args is None:
        args = {}
    elif not _is_str_map(args):
        raise ProtocolViolation(
            ErrorCode.BAD_PARAMS, "args must be a map with string keys", call_id=call_id
        )
    return Call(call_id, method, args)


def parse_client(frame: Frame) -> ClientMessage:
    """The typed view of a frame a client sent; server→client types are ``bad_frame``."""
    if frame.type is FrameType.FRAME:
        return parse_frame(frame)
    if frame.type is FrameType.PARAMS:
        return parse_params(frame)
    if frame.type is FrameType.CALL:
        return parse_call(frame)
    if frame.type is FrameType.HELLO:
        return parse_hello(frame)
    raise ProtocolViolation(ErrorCode.BAD_FRAME, f"{frame.type.name} is sent by servers only")


def decode_client(
    data: bytes | bytearray | memoryview,
    limits: Limits = DEFAULT_LIMITS,
) -> ClientMessage:
    """:func:`decode` then :func:`parse_client`: one call per received message."""
    return parse_client(decode(data, limits))


def _opt_str(header: dict[str, Any], key: str) -> str | None:
    value = header.get(key)
    if value is not None and type(value) is not str:
        raise ProtocolViolation(ErrorCode.BAD_FRAME, f"{key} must be a string")
    return value


def _opt_params(value: object, seq: int | None = None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not _is_str_map(value):
        raise ProtocolViolation(
            ErrorCode.BAD_PARAMS, "params must be a map with string keys", seq=seq
        )
    return value


# --- builders -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timings:
    """RESULT ``t``: where one frame's time went, in milliseconds."""

    queue_ms: float
    pipeline_ms: float
    total_ms: float

    def to_header(self) -> dict[str, float]:
        return {
            "queue_ms": self.queue_ms,
            "pipeline_ms": self.pipeline_ms,
            "total_ms": self.total_ms,
        }


def _header(**fields: Any) -> dict[str, Any]:
    """A header from keyword fields, leaving out the ones that are ``None``."""
    return {k: v for k, v in fields.items() if v is not None}


def encode_hello(
    *,
    client: str | None = None,
    session: str | None = None,
    resume: str | None = None,
    pipeline: str | None = None,
    drain: Drain | None = None,
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
    drain: Drain,
    params: Mapping[str, Any],
    limits: Limits,
) -> bytes:
    header = {
        "session": session,
        "resume": resume,
        "pipeline": pipeline,
        "drain": drain,
        "params": dict(params),
        "limits": limits.to_header(),
    }
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
        seq=seq, ct=ct, w=w, h=h, ts=ts, params=None if params is None else dict(params)
    )
    return encode(FrameType.FRAME, header, payload)


def encode_result(
    seq: int,
    ct: ContentType,
    payload: bytes | memoryview,
    *,
    timings: Timings,
    superseded: int = 0,
    w: int | None = None,
    h: int | None = None,
) -> bytes:
    header = _header(seq=seq, ct=ct, w=w, h=h, t=timings.to_header(), superseded=superseded)
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
