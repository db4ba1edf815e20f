"""Protocol v1 codec: round trips, every violation's code, zero copy, fuzzing."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import errors
from transport import protocol as p
from transport.protocol import (
    Call,
    CallMethod,
    CloseCode,
    ContentType,
    DrainStrategy,
    ErrorCode,
    EventName,
    FrameTimings,
    FrameType,
    Hello,
    InputFrame,
    Limits,
    ParamsUpdate,
    ProtocolViolation,
    ViolationCounter,
    decode,
    decode_client,
    encode,
)

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg"
msgpack_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def raw_message(type_byte: int, header: bytes, payload: bytes = b"", **prelude: int) -> bytes:
    """A message built by hand, so tests can break any field of the prelude."""
    magic = prelude.get("magic", 0xEA)
    version = prelude.get("version", 1)
    header_len = prelude.get("header_len", len(header))
    return struct.pack(">BBBBI", magic, version, type_byte, 0, header_len) + header + payload


def violation(data: bytes, limits: Limits = p.DEFAULT_LIMITS) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        decode_client(data, limits)
    return info.value


# --- vocabulary ---------------------------------------------------------------------


def test_vocabulary_matches_protocol_md() -> None:
    assert {t.name: t.value for t in FrameType} == {
        "HELLO": 0x01,
        "WELCOME": 0x02,
        "FRAME": 0x10,
        "RESULT": 0x11,
        "PARAMS": 0x20,
        "CALL": 0x30,
        "REPLY": 0x31,
        "EVENT": 0x40,
        "ERROR": 0x7F,
    }
    assert [c.value for c in ErrorCode] == [
        "bad_frame",
        "unsupported_version",
        "unknown_type",
        "binary_only",
        "too_large",
        "bad_params",
        "bad_content",
        "pipeline_error",
        "overloaded",
        "unauthorized",
        "forbidden",
        "session_closed",
        "not_found",
        "internal",
    ]
    assert sorted(CloseCode) == [1000, 1001, 1008, 1009, 1011, 4404, 4409]
    assert {c.value for c in ContentType} == {
        "image/jpeg",
        "image/png",
        "image/webp",
        "raw/rgb8",
        "raw/rgba8",
    }
    assert {m.value for m in CallMethod} == {
        "session.stats",
        "session.params",
        "pipeline.info",
        "job.subscribe",
    }
    assert {e.value for e in EventName} == {
        "pipeline.restarting",
        "pipeline.ready",
        "session.expiring",
        "session.closed",
        "stats",
        "job.queued",
        "job.dispatched",
        "job.running",
        "job.progress",
        "job.succeeded",
        "job.failed",
        "job.cancelled",
    }
    assert p.SUBPROTOCOL == "easel.v1"


def test_public_names_are_pinned() -> None:
    assert set(p.__all__) == {
        "DEFAULT_LIMITS", "MAGIC", "PRELUDE_SIZE", "SUBPROTOCOL", "VERSION",
        "Call", "CallMethod", "ClientMessage", "CloseCode", "ContentType", "DrainStrategy",
        "ErrorCode", "EventName", "Frame", "FrameType", "Hello", "InputFrame", "Limits",
        "ParamsUpdate", "ProtocolViolation", "FrameTimings", "ViolationCounter",
        "decode", "decode_client", "encode", "encode_call", "encode_error", "encode_event",
        "encode_exception", "encode_frame", "encode_hello", "encode_params", "encode_reply",
        "encode_reply_error", "encode_result", "encode_welcome", "error_for",
        "parse_call", "parse_client", "parse_frame", "parse_hello", "parse_params",
    }  # fmt: skip


def test_wire_layout_is_exact() -> None:
    header = msgpack.packb({"params": {"a": 1}})
    assert (
        p.encode_params({"a": 1}) == b"\xea\x01\x20\x00" + struct.pack(">I", len(header)) + header
    )


def test_empty_header_is_sent_as_zero_length_and_decodes_to_empty_map() -> None:
    data = encode(FrameType.EVENT, {}, b"xyz")
    assert data == b"\xea\x01\x40\x00\x00\x00\x00\x00xyz"
    frame = decode(data)
    assert frame.header == {}
    assert bytes(frame.payload) == b"xyz"


def test_limits_round_trip_through_welcome_header() -> None:
    limits = Limits(max_frame=1 << 20, max_header=4096, max_inflight=2)
    assert Limits.from_header(limits.to_header()) == limits
    assert Limits.from_header({"max_frame": -1, "max_inflight": True}) == Limits()
    assert Limits.from_header(None) == Limits()
    with pytest.raises(ValueError, match="max_header"):
        Limits(max_header=0)


# --- round trips ----------------------------------------------------------------------


def test_hello_round_trip() -> None:
    data = p.encode_hello(
        client="easel-py/0.1",
        session="s1",
        resume="r1",
        pipeline="sketch",
        drain=DrainStrategy.ALL,
        params={"strength": 0.5},
    )
    assert decode(data).type is FrameType.HELLO
    assert decode_client(data) == Hello(
        client="easel-py/0.1",
        session="s1",
        resume="r1",
        pipeline="sketch",
        drain=DrainStrategy.ALL,
        params={"strength": 0.5},
    )
    assert decode_client(p.encode_hello()) == Hello()


def test_frame_round_trip_encoded_image() -> None:
    data = p.encode_frame(7, ContentType.JPEG, JPEG, ts=12.5, params={"seed": 3})
    msg = decode_client(data)
    assert isinstance(msg, InputFrame)
    assert (msg.seq, msg.ct, msg.ts, msg.params, msg.w, msg.h) == (
        7,
        ContentType.JPEG,
        12.5,
        {"seed": 3},
        None,
        None,
    )
    assert bytes(msg.payload) == JPEG


@pytest.mark.parametrize(("ct", "channels"), [(ContentType.RGB8, 3), (ContentType.RGBA8, 4)])
def test_frame_round_trip_raw_image(ct: ContentType, channels: int) -> None:
    pixels = bytes(range(256))[: 4 * 2 * channels]
    msg = decode_client(p.encode_frame(0, ct, pixels, w=4, h=2, ts=1))
    assert isinstance(msg, InputFrame)
    assert (msg.w, msg.h, msg.ts) == (4, 2, 1.0)
    assert bytes(msg.payload) == pixels


def test_params_and_call_round_trip() -> None:
    assert decode_client(p.encode_params({"a": [1, 2]})) == ParamsUpdate({"a": [1, 2]})
    assert decode_client(p.encode_call(9, CallMethod.SESSION_STATS)) == Call(
        9, CallMethod.SESSION_STATS, {}
    )
    assert decode_client(p.encode_call("x", "pipeline.info", {"v": True})) == Call(
        "x", CallMethod.PIPELINE_INFO, {"v": True}
    )


def test_server_frames_round_trip() -> None:
    limits = Limits(max_inflight=3)
    welcome = decode(
        p.encode_welcome(
            session="s1",
            resume="r",
            pipeline="sketch",
            drain=DrainStrategy.LATEST,
            params={"k": 1},
            limits=limits,
        )
    )
    assert welcome.type is FrameType.WELCOME
    assert welcome.header == {
        "session": "s1",
        "resume": "r",
        "pipeline": "sketch",
        "drain": "latest",
        "params": {"k": 1},
        "limits": {"max_frame": 8 << 20, "max_header": 64 << 10, "max_inflight": 3},
    }

    result = decode(
        p.encode_result(
            4, ContentType.PNG, b"png", timings=FrameTimings(1.0, 2.5, 4.0), superseded=2
        )
    )
    assert result.type is FrameType.RESULT
    assert result.header == {
        "seq": 4,
        "ct": "image/png",
        "t": {"queue_ms": 1.0, "pipeline_ms": 2.5, "total_ms": 4.0},
        "superseded": 2,
    }
    assert bytes(result.payload) == b"png"
    raw = decode(
        p.encode_result(5, ContentType.RGB8, b"\0" * 6, timings=FrameTimings(0, 0, 0), w=2, h=1)
    )
    assert (raw.header["w"], raw.header["h"], raw.header["superseded"]) == (2, 1, 0)

    reply = decode(p.encode_reply(9, {"frames": 10}))
    assert (reply.type, reply.header) == (FrameType.REPLY, {"id": 9, "result": {"frames": 10}})
    failed = decode(p.encode_reply_error("a", ErrorCode.NOT_FOUND, "no such method"))
    assert failed.header == {"id": "a", "error": {"code": "not_found", "message": "no such method"}}

    event = decode(p.encode_event(EventName.PIPELINE_READY, {"pipeline": "sketch"}))
    assert (event.type, event.header) == (
        FrameType.EVENT,
        {"event": "pipeline.ready", "data": {"pipeline": "sketch"}},
    )

    error = decode(p.encode_error(ErrorCode.PIPELINE_ERROR, "boom", seq=3))
    assert (error.type, error.header) == (
        FrameType.ERROR,
        {"code": "pipeline_error", "message": "boom", "seq": 3, "fatal": False},
    )
    fatal = decode(p.encode_error(ErrorCode.INTERNAL, "bye", fatal=True))
    assert fatal.header == {"code": "internal", "message": "bye", "fatal": True}


def test_unknown_header_keys_and_flag_bits_are_ignored() -> None:
    header = msgpack.packb({"seq": 1, "ct": "image/webp", "future": {"x": 1}})
    data = bytearray(raw_message(0x10, header, b"webp"))
    data[3] = 0xFF  # flags
    msg = decode_client(data)
    assert isinstance(msg, InputFrame)
    assert (msg.seq, msg.ct) == (1, ContentType.WEBP)


def test_encode_accepts_any_mapping_and_memoryview_payload() -> None:
    from types import MappingProxyType

    data = encode(FrameType.EVENT, MappingProxyType({"event": "stats"}), memoryview(b"abc"))
    frame = decode(data)
    assert frame.header == {"event": "stats"}
    assert bytes(frame.payload) == b"abc"


# --- zero copy ------------------------------------------------------------------------


def test_payload_is_a_view_of_the_received_bytes() -> None:
    data = p.encode_frame(1, ContentType.JPEG, JPEG)
    frame = decode(data)
    assert isinstance(frame.payload, memoryview)
    assert frame.payload.obj is data
    msg = decode_client(data)
    assert isinstance(msg, InputFrame)
    assert msg.payload.obj is data


def test_payload_views_a_bytearray_and_a_memoryview_without_copying() -> None:
    buffer = bytearray(p.encode_frame(1, ContentType.JPEG, JPEG))
    frame = decode(buffer)
    assert frame.payload.obj is buffer
    buffer[-1] = ord("!")
    assert bytes(frame.payload)[-1:] == b"!"

    assert decode(memoryview(buffer)).payload.obj is buffer


# --- violations -------------------------------------------------------------------------

FRAME_HEADER = msgpack.packb({"seq": 1, "ct": "image/jpeg"})


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"", ErrorCode.BAD_FRAME, id="empty"),
        pytest.param(b"\xea\x01\x10\x00\x00\x00\x00", ErrorCode.BAD_FRAME, id="short-prelude"),
        pytest.param(raw_message(0x10, FRAME_HEADER, JPEG, magic=0xEB), ErrorCode.BAD_FRAME,
                     id="bad-magic"),
        pytest.param(raw_message(0x10, FRAME_HEADER, JPEG, version=2),
                     ErrorCode.UNSUPPORTED_VERSION, id="version-2"),
        pytest.param(raw_message(0x55, FRAME_HEADER, JPEG), ErrorCode.UNKNOWN_TYPE,
                     id="unknown-type"),
        pytest.param(raw_message(0x10, FRAME_HEADER, b"", header_len=len(FRAME_HEADER) + 1),
                     ErrorCode.TOO_LARGE, id="header-len-past-message"),
        pytest.param(raw_message(0x10, FRAME_HEADER, JPEG, header_len=0xFFFFFFFF),
                     ErrorCode.TOO_LARGE, id="header-len-huge"),
        pytest.param(raw_message(0x10, msgpack.packb([1, 2])), ErrorCode.BAD_FRAME,
                     id="header-not-a-map"),
        pytest.param(raw_message(0x10, msgpack.packb({1: 2})), ErrorCode.BAD_FRAME,
                     id="header-int-key"),
        pytest.param(raw_message(0x10, msgpack.packb({b"seq": 1})), ErrorCode.BAD_FRAME,
                     id="header-bytes-key"),
        pytest.param(raw_message(0x10, FRAME_HEADER + b"\xc0"), ErrorCode.BAD_FRAME,
                     id="header-trailing-garbage"),
        pytest.param(raw_message(0x10, b"\xc1"), ErrorCode.BAD_FRAME, id="header-invalid"),
        pytest.param(raw_message(0x10, b"\x85\xa1a"), ErrorCode.BAD_FRAME,
                     id="header-truncated"),
        pytest.param(raw_message(0x10, b"\xdf\xff\xff\xff\xff"), ErrorCode.BAD_FRAME,
                     id="header-claims-huge-map"),
        pytest.param(raw_message(0x10, b"\x91" * 5000 + b"\xc0"), ErrorCode.BAD_FRAME,
                     id="header-nested-too-deep"),
        pytest.param(raw_message(0x10, msgpack.packb({"s": "x"})[:-1] + b"\xff"),
                     ErrorCode.BAD_FRAME, id="header-bad-utf8"),
        pytest.param(p.encode_reply(1, None), ErrorCode.BAD_FRAME, id="server-type-from-client"),
    ],
)  # fmt: skip
def test_envelope_violations(data: bytes, code: ErrorCode) -> None:
    exc = violation(data)
    assert exc.code is code
    assert (exc.close, exc.fatal, exc.seq, exc.call_id) == (None, False, None, None)


def test_header_over_max_header_is_too_large() -> None:
    header = msgpack.packb({"seq": 1, "ct": "image/jpeg", "pad": "x" * 100})
    exc = violation(raw_message(0x10, header, JPEG), Limits(max_header=64))
    assert exc.code is ErrorCode.TOO_LARGE
    assert exc.close is None


def test_message_over_max_frame_is_too_large_and_closes_1009() -> None:
    limits = Limits(max_frame=1024)
    assert isinstance(
        decode_client(p.encode_frame(1, ContentType.JPEG, b"x" * 900), limits), InputFrame
    )
    exc = violation(p.encode_frame(1, ContentType.JPEG, b"x" * 1024), limits)
    assert exc.code is ErrorCode.TOO_LARGE
    assert exc.close is CloseCode.TOO_LARGE
    assert exc.fatal
    error = decode(exc.encode())
    assert error.type is FrameType.ERROR
    assert error.header["fatal"] is True


def frame_message(header: dict[str, Any], payload: bytes = JPEG) -> bytes:
    return encode(FrameType.FRAME, header, payload)


@pytest.mark.parametrize(
    ("data", "code", "seq"),
    [
        pytest.param(frame_message({"ct": "image/jpeg"}), ErrorCode.BAD_FRAME, None, id="no-seq"),
        pytest.param(frame_message({"seq": -1, "ct": "image/jpeg"}), ErrorCode.BAD_FRAME, None,
                     id="negative-seq"),
        pytest.param(frame_message({"seq": True, "ct": "image/jpeg"}), ErrorCode.BAD_FRAME, None,
                     id="bool-seq"),
        pytest.param(frame_message({"seq": 1.0, "ct": "image/jpeg"}), ErrorCode.BAD_FRAME, None,
                     id="float-seq"),
        pytest.param(frame_message({"seq": 3}), ErrorCode.BAD_CONTENT, 3, id="no-ct"),
        pytest.param(frame_message({"seq": 3, "ct": "image/gif"}), ErrorCode.BAD_CONTENT, 3,
                     id="unknown-ct"),
        pytest.param(frame_message({"seq": 3, "ct": "image/png"}, b""), ErrorCode.BAD_CONTENT, 3,
                     id="empty-image"),
        pytest.param(frame_message({"seq": 3, "ct": "raw/rgb8", "w": 2}, b"\0" * 6),
                     ErrorCode.BAD_CONTENT, 3, id="raw-no-h"),
        pytest.param(frame_message({"seq": 3, "ct": "raw/rgb8", "w": 0, "h": 0}, b""),
                     ErrorCode.BAD_CONTENT, 3, id="raw-zero-size"),
        pytest.param(frame_message({"seq": 3, "ct": "raw/rgb8", "w": True, "h": 6}, b"\0" * 18),
                     ErrorCode.BAD_CONTENT, 3, id="raw-bool-w"),
        pytest.param(frame_message({"seq": 3, "ct": "raw/rgb8", "w": 2, "h": 1}, b"\0" * 8),
                     ErrorCode.BAD_CONTENT, 3, id="rgb-wrong-length"),
        pytest.param(frame_message({"seq": 3, "ct": "raw/rgba8", "w": 2, "h": 1}, b"\0" * 6),
                     ErrorCode.BAD_CONTENT, 3, id="rgba-wrong-length"),
        pytest.param(frame_message({"seq": 3, "ct": "image/jpeg", "ts": "now"}),
                     ErrorCode.BAD_FRAME, 3, id="ts-string"),
        pytest.param(frame_message({"seq": 3, "ct": "image/jpeg", "ts": float("nan")}),
                     ErrorCode.BAD_FRAME, 3, id="ts-nan"),
        pytest.param(frame_message({"seq": 3, "ct": "image/jpeg", "params": [1]}),
                     ErrorCode.BAD_PARAMS, 3, id="params-list"),
        pytest.param(frame_message({"seq": 3, "ct": "image/jpeg", "params": {b"k": 1}}),
                     ErrorCode.BAD_PARAMS, 3, id="params-bytes-key"),
    ],
)  # fmt: skip
def test_frame_violations_carry_code_and_seq(data: bytes, code: ErrorCode, seq: int | None) -> None:
    exc = violation(data)
    assert (exc.code, exc.seq, exc.close) == (code, seq, None)
    error = decode(exc.encode())
    assert error.type is FrameType.ERROR
    assert error.header.get("seq") == seq
    assert error.header["code"] == code.value
    assert error.header["fatal"] is False


@pytest.mark.parametrize(
    ("header", "code"),
    [
        pytest.param({}, ErrorCode.UNSUPPORTED_VERSION, id="no-proto"),
        pytest.param({"proto": 2}, ErrorCode.UNSUPPORTED_VERSION, id="proto-2"),
        pytest.param({"proto": True}, ErrorCode.UNSUPPORTED_VERSION, id="proto-bool"),
        pytest.param({"proto": 1, "drain": "some"}, ErrorCode.BAD_FRAME, id="bad-drain"),
        pytest.param({"proto": 1, "session": 5}, ErrorCode.BAD_FRAME, id="session-int"),
        pytest.param({"proto": 1, "client": ["x"]}, ErrorCode.BAD_FRAME, id="client-list"),
        pytest.param({"proto": 1, "params": "a=1"}, ErrorCode.BAD_PARAMS, id="params-string"),
    ],
)
def test_hello_violations(header: dict[str, Any], code: ErrorCode) -> None:
    assert violation(encode(FrameType.HELLO, header)).code is code


@pytest.mark.parametrize("header", [{}, {"params": None}, {"params": [1]}, {"params": {b"k": 1}}])
def test_params_violations(header: dict[str, Any]) -> None:
    assert violation(encode(FrameType.PARAMS, header)).code is ErrorCode.BAD_PARAMS


@pytest.mark.parametrize("call_id", [None, -1, 1.5, False, [1]])
def test_call_without_a_usable_id_gets_error_frame(call_id: object) -> None:
    exc = violation(encode(FrameType.CALL, {"id": call_id, "method": "session.stats"}))
    assert (exc.code, exc.call_id) == (ErrorCode.BAD_FRAME, None)
    assert decode(exc.encode()).type is FrameType.ERROR


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ({"id": 4, "method": "session.delete"}, ErrorCode.NOT_FOUND),
        ({"id": 4}, ErrorCode.NOT_FOUND),
        ({"id": 4, "method": "session.stats", "args": [1]}, ErrorCode.BAD_PARAMS),
    ],
)
def test_call_violations_are_answered_by_reply_error(
    header: dict[str, Any], code: ErrorCode
) -> None:
    exc = violation(encode(FrameType.CALL, header))
    assert (exc.code, exc.call_id) == (code, 4)
    reply = decode(exc.encode())
    assert reply.type is FrameType.REPLY
    assert reply.header["id"] == 4
    assert reply.header["error"]["code"] == code.value


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 2**64 - 1),
    ct=st.sampled_from(list(ContentType)),
    w=st.integers(1, 16),
    h=st.integers(1, 16),
    ts=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    params=st.none() | st.dictionaries(st.text(max_size=8), msgpack_ints | st.text(max_size=8)),
)
def test_any_valid_frame_round_trips(
    *,
    seq: int,
    ct: ContentType,
    w: int,
    h: int,
    ts: float | None,
    params: dict[str, Any] | None,
) -> None:
    size = w * h * (ct.channels or 1)
    payload = bytes(i % 251 for i in range(size))
    raw = ct.channels is not None
    data = p.encode_frame(
        seq, ct, payload, w=w if raw else None, h=h if raw else None, ts=ts, params=params
    )
    assert decode_client(data) == InputFrame(
        seq=seq,
        ct=ct,
        payload=memoryview(payload),
        w=w if raw else None,
        h=h if raw else None,
        ts=ts,
        params=params,
    )


# --- engine errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (errors.PipelineError("model failed"), ErrorCode.PIPELINE_ERROR, "model failed"),
        (errors.BadContent(), ErrorCode.BAD_CONTENT, "Content could not be decoded"),
        (errors.MailboxFull(), ErrorCode.OVERLOADED, "Mailbox full"),
        (errors.NotFound("no session"), ErrorCode.NOT_FOUND, "no session"),
        (errors.SessionClosed(), ErrorCode.SESSION_CLOSED, "Session closed"),
        (errors.Invalid("strength > 1"), ErrorCode.BAD_PARAMS, "strength > 1"),
        (errors.AskTimeout(), ErrorCode.OVERLOADED, "No reply in time"),
        (errors.Unavailable(), ErrorCode.OVERLOADED, "Service unavailable"),
        (errors.ActorCrashed("boom"), ErrorCode.INTERNAL, "boom"),
        (errors.Conflict("taken"), ErrorCode.INTERNAL, "taken"),
        (RuntimeError("/secret/path.py line 3"), ErrorCode.INTERNAL, "internal error"),
    ],
)
def test_exceptions_map_to_protocol_codes_without_leaking(
    exc: BaseException, code: ErrorCode, message: str
) -> None:
    assert p.error_for(exc) == (code, message)
    error = decode(p.encode_exception(exc, seq=5))
    assert error.header == {"code": code.value, "message": message, "seq": 5, "fatal": False}


# --- violation counter ------------------------------------------------------------------


def test_counter_closes_at_the_sixteenth_consecutive_violation() -> None:
    counter = ViolationCounter()
    assert [counter.violation() for _ in range(15)] == [False] * 15
    assert counter.violation() is True


def test_counter_resets_on_a_valid_frame() -> None:
    counter = ViolationCounter()
    for _ in range(15):
        counter.violation()
    counter.valid()
    assert [counter.violation() for _ in range(15)] == [False] * 15
    assert counter.violation() is True


# --- fuzzing ------------------------------------------------------------------------------

SMALL = Limits(max_frame=4096, max_header=1024)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | msgpack_ints
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from([*ContentType, *DrainStrategy, *CallMethod]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
header_keys = st.sampled_from(
    ["seq", "ct", "w", "h", "ts", "params", "proto", "client", "session", "resume",
     "pipeline", "drain", "id", "method", "args", "x"]
)  # fmt: skip
client_types = st.sampled_from([0x01, 0x10, 0x20, 0x30])
valid_messages = st.sampled_from(
    [
        p.encode_hello(client="c", drain=DrainStrategy.LATEST, params={"a": 1}),
        p.encode_frame(1, ContentType.JPEG, JPEG, ts=1.5, params={"s": 2}),
        p.encode_frame(2, ContentType.RGBA8, b"\0" * 16, w=2, h=2),
        p.encode_params({"a": [1, {"b": 2}]}),
        p.encode_call(1, CallMethod.SESSION_PARAMS, {"k": "v"}),
    ]
)


# The codes decoding can produce, as documented in transport/protocol.py.
DECODE_CODES = {
    ErrorCode.BAD_FRAME,
    ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.UNKNOWN_TYPE,
    ErrorCode.TOO_LARGE,
    ErrorCode.BAD_CONTENT,
    ErrorCode.BAD_PARAMS,
    ErrorCode.NOT_FOUND,
}


def outcome(data: bytes | bytearray) -> p.ClientMessage | ProtocolViolation:
    try:
        return decode_client(data, SMALL)
    except ProtocolViolation as exc:
        return exc


def assert_only_documented_violations(data: bytes | bytearray) -> None:
    result = outcome(data)
    if isinstance(result, ProtocolViolation):
        assert type(result.code) is ErrorCode
        assert result.code in DECODE_CODES
        assert result.close in (None, CloseCode.TOO_LARGE)
        answer = decode(result.encode())  # the answer itself is always a valid frame
        assert answer.type in (FrameType.ERROR, FrameType.REPLY)
    else:
        assert isinstance(result, Hello | InputFrame | ParamsUpdate | Call)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    assert_only_documented_violations(data)


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_after_a_valid_prelude(tail: bytes) -> None:
    assert_only_documented_violations(b"\xea\x01\x10\x00" + struct.pack(">I", len(tail)) + tail)


@FUZZ
@given(valid_messages, st.data())
def test_fuzz_bit_flips(data: bytes, draw: st.DataObject) -> None:
    buffer = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 8))):
        position = draw.draw(st.integers(0, len(buffer) - 1))
        buffer[position] ^= 1 << draw.draw(st.integers(0, 7))
    assert_only_documented_violations(buffer)


@FUZZ
@given(valid_messages, st.data())
def test_fuzz_truncation(data: bytes, draw: st.DataObject) -> None:
    assert_only_documented_violations(data[: draw.draw(st.integers(0, len(data)))])


@FUZZ
@given(valid_messages, st.integers(0, 2**32 - 1))
def test_fuzz_header_len_tampering(data: bytes, header_len: int) -> None:
    assert_only_documented_violations(data[:4] + struct.pack(">I", header_len) + data[8:])


@FUZZ
@given(
    client_types, st.dictionaries(header_keys, msgpack_values, max_size=8), st.binary(max_size=48)
)
def test_fuzz_random_header_values(type_byte: int, header: dict[str, Any], payload: bytes) -> None:
    assert_only_documented_violations(raw_message(type_byte, msgpack.packb(header), payload))
