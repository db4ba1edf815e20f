"""The Easel realtime protocol, version 1: the binary WebSocket frame codec.

``docs/protocol.md`` is the contract; this package implements it and nothing more, in
three private modules re-exported here: ``_types`` (the vocabulary), ``_codec``
(envelope, :class:`ProtocolViolation`, builders) and ``_messages`` (validated views
of client frames). Every WebSocket message carries one frame::

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

:func:`error_for` maps any exception to a protocol code and a client-safe message
(:func:`encode_exception` builds the ERROR frame), so the handler never leaks a
traceback.

The WebSocket handler's receive loop, in outline::

    counter = ViolationCounter()
    async for message in ws:
        try:
            if message.type is not WSMsgType.BINARY:
                raise ProtocolViolation(ErrorCode.BINARY_ONLY, "frames are binary")
            msg = decode_client(message.data, limits)  # Hello | InputFrame | ...
        except ProtocolViolation as exc:
            await ws.send_bytes(exc.encode())
            if exc.close is not None or counter.violation():
                await ws.close(code=exc.close or CloseCode.POLICY)
                break
            continue
        counter.valid()
        ...  # hand msg to the session

Not checked here, because they need connection state: ``seq`` increasing, and
which frame may come first; the WebSocket handler owns those.

``ProtocolViolation`` is deliberately not an :class:`engine.errors.EaselError`: it is
about bytes on one connection, never crosses into the actors, and its code is
per instance where ``EaselError.code`` is per class.
"""

from engine.types import DrainStrategy, FrameTimings
from transport.protocol._codec import (
    Frame,
    ProtocolViolation,
    ViolationCounter,
    decode,
    encode,
    encode_call,
    encode_error,
    encode_event,
    encode_exception,
    encode_frame,
    encode_hello,
    encode_params,
    encode_reply,
    encode_reply_error,
    encode_result,
    encode_welcome,
    error_for,
)
from transport.protocol._messages import (
    Call,
    ClientMessage,
    Hello,
    InputFrame,
    ParamsUpdate,
    decode_client,
    parse_call,
    parse_client,
    parse_frame,
    parse_hello,
    parse_params,
)
from transport.protocol._types import (
    DEFAULT_LIMITS,
    MAGIC,
    PRELUDE_SIZE,
    SUBPROTOCOL,
    VERSION,
    CallMethod,
    CloseCode,
    ContentType,
    ErrorCode,
    EventName,
    FrameType,
    Limits,
)

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
    "DrainStrategy",
    "ErrorCode",
    "EventName",
    "Frame",
    "FrameTimings",
    "FrameType",
    "Hello",
    "InputFrame",
    "Limits",
    "ParamsUpdate",
    "ProtocolViolation",
    "ViolationCounter",
    "decode",
    "decode_client",
    "encode",
    "encode_call",
    "encode_error",
    "encode_event",
    "encode_exception",
    "encode_frame",
    "encode_hello",
    "encode_params",
    "encode_reply",
    "encode_reply_error",
    "encode_result",
    "encode_welcome",
    "error_for",
    "parse_call",
    "parse_client",
    "parse_frame",
    "parse_hello",
    "parse_params",
]
