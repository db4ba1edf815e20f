"""Typed, validated views of the frames a client sends."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.types import DrainStrategy
from transport.protocol._codec import Frame, ProtocolViolation, decode
from transport.protocol._types import (
    CALL_METHODS,
    CONTENT_TYPES,
    DEFAULT_LIMITS,
    DRAINS,
    VERSION,
    CallMethod,
    ContentType,
    ErrorCode,
    FrameType,
    Limits,
    is_str_map,
    is_uint,
    member,
)


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: how the client wants its session set up; ``None`` means unspecified."""

    client: str | None = None
    session: str | None = None
    resume: str | None = None
    pipeline: str | None = None
    drain: DrainStrategy | None = None
    params: dict[str, Any] | None = None


@dataclass(slots=True)
class InputFrame:
    """FRAME: one image to process. ``payload`` is a zero-copy view of the message.

    ``w`` and ``h`` are set for raw content only; ``ts`` is the client's clock in ms;
    ``params`` override the session's for this frame only.
    """

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
    """Validate HELLO: ``proto`` must be 1 (else ``unsupported_version``)."""
    h = frame.header
    proto = h.get("proto")
    if not is_uint(proto) or proto != VERSION:
        raise ProtocolViolation(ErrorCode.UNSUPPORTED_VERSION, f"proto {proto!r} is not 1")
    drain = member(DRAINS, h.get("drain"))
    if drain is None and h.get("drain") is not None:
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "drain must be 'latest' or 'all'")
    return Hello(
        client=_opt_str(h, "client"),
        session=_opt_str(h, "session"),
        resume=_opt_str(h, "resume"),
        pipeline=_opt_str(h, "pipeline"),
        drain=drain,
        params=_opt_params(h.get("params")),
    )


def parse_frame(frame: Frame) -> InputFrame:
    """Validate FRAME. Violations after a valid ``seq`` carry it, so ERROR can too."""
    h = frame.header
    seq = h.get("seq")
    if not is_uint(seq):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "seq must be a non-negative integer")
    ct = member(CONTENT_TYPES, h.get("ct"))
    if ct is None:
        raise ProtocolViolation(
            ErrorCode.BAD_CONTENT, f"unknown content type {h.get('ct')!r}", seq=seq
        )
    size = frame.payload.nbytes
    w = h.get("w")
    hh = h.get("h")
    channels = ct.channels
    if channels is not None:
        if not (is_uint(w) and is_uint(hh) and w > 0 and hh > 0):
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
    """Validate PARAMS: ``params`` must be a map with string keys (``bad_params``)."""
    params = _opt_params(frame.header.get("params"))
    if params is None:
        raise ProtocolViolation(ErrorCode.BAD_PARAMS, "PARAMS needs a params map")
    return ParamsUpdate(params)


def parse_call(frame: Frame) -> Call:
    """Validate CALL. Once ``id`` is valid, violations carry ``call_id`` (REPLY error)."""
    h = frame.header
    call_id = h.get("id")
    if not (is_uint(call_id) or type(call_id) is str):
        raise ProtocolViolation(ErrorCode.BAD_FRAME, "CALL id must be an integer or a string")
    method = member(CALL_METHODS, h.get("method"))
    if method is None:
        raise ProtocolViolation(
            ErrorCode.NOT_FOUND, f"unknown method {h.get('method')!r}", call_id=call_id
        )
    args = h.get("args")
    if args is None:
        args = {}
    elif not is_str_map(args):
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
    if not is_str_map(value):
        raise ProtocolViolation(
            ErrorCode.BAD_PARAMS, "params must be a map with string keys", seq=seq
        )
    return value
