"""docs/protocol.md and the codec agree: its tables name what the code has, no more, no
less, and its worked example decodes with the real codec into what the page says."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import web

from engine.settings import Settings
from transport import ws
from transport.protocol import (
    MAGIC,
    PRELUDE_SIZE,
    SUBPROTOCOL,
    VERSION,
    Call,
    CallMethod,
    CloseCode,
    ContentType,
    DrainStrategy,
    ErrorCode,
    EventName,
    Frame,
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
    encode_call,
    encode_error,
    encode_event,
    encode_frame,
    encode_hello,
    encode_params,
    encode_reply,
    encode_reply_error,
    encode_result,
    encode_welcome,
    parse_client,
)

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")

Row = dict[str, str]


# --- reading the page ---------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every Markdown table as (the heading it sits under, header cells, rows)."""
    found: list[tuple[str, list[str], list[list[str]]]] = []
    lines = text.splitlines()
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif (
            line.startswith("|")
            and i + 1 < len(lines)
            and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip())
        ):
            head = _cells(line)
            rows: list[list[str]] = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((heading, head, rows))
            continue
        i += 1
    return found


TABLES = _tables(DOC)


def table(heading: str, first_column: str) -> list[Row]:
    """The one table under ``heading`` whose first column is ``first_column``."""
    matches = [(head, rows) for h, head, rows in TABLES if h == heading and head[0] == first_column]
    assert len(matches) == 1, f"expected one {first_column!r} table under {heading!r}"
    head, rows = matches[0]
    for row in rows:
        assert len(row) == len(head), f"row {row} under {heading!r} has the wrong width"
    return [dict(zip(head, row, strict=True)) for row in rows]


def code_span(cell: str) -> str:
    """The text of a cell that is a single ``code`` span."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"{cell!r} should be one code span"
    return match.group(1)


def column(heading: str, first_column: str) -> list[str]:
    return [code_span(row[first_column]) for row in table(heading, first_column)]


def unique(values: list[str]) -> set[str]:
    assert len(values) == len(set(values)), f"listed twice: {values}"
    return set(values)


def codes_in(cell: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", cell))


# --- connection ---------------------------------------------------------------------


def _placeholders(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_endpoints_are_the_websocket_routes() -> None:
    routes = {
        _placeholders(route.path)
        for route in ws.routes
        if isinstance(route, web.RouteDef) and route.method == "GET"
    }
    documented = {_placeholders(path) for path in column("Endpoints", "endpoint")}
    assert documented == routes


def test_subprotocol() -> None:
    assert re.findall(r"subprotocol\s+\*\*`([^`]+)`\*\*", DOC) == [SUBPROTOCOL]


def test_refusals_use_protocol_codes() -> None:
    rows = table("Refusals", "situation")
    assert rows
    for row in rows:
        assert codes_in(row["ERROR `code`"]) <= set(ErrorCode), row
        assert int(row["close code"]) in set(CloseCode), row


def test_counts_and_timeouts() -> None:
    assert re.findall(r"after \*\*(\d+) consecutive\*\*", DOC) == [str(ViolationCounter().limit)]
    goodbye = re.findall(r"not written within (\d+) s", DOC)
    assert [float(s) for s in goodbye] == [ws.CLOSE_TIMEOUT]
    hello = re.findall(r"`EASEL_HELLO_TIMEOUT` seconds\s+\(default (\d+)\)", DOC)
    assert [float(s) for s in hello] == [Settings.model_fields["hello_timeout"].default]


# --- framing ------------------------------------------------------------------------


def test_prelude_layout_is_the_encoders() -> None:
    rows = {row["field"]: row for row in table("Message framing", "offset")}
    assert set(rows) == {"magic", "version", "type", "flags", "header_len", "header", "payload"}
    fixed = [row for row in rows.values() if row["size"].isdigit()]
    offset = 0
    for row in fixed:  # in page order: contiguous from 0
        assert int(row["offset"]) == offset, row
        offset += int(row["size"])
    assert offset == PRELUDE_SIZE
    assert int(code_span(rows["magic"]["value"]), 16) == MAGIC
    assert int(code_span(rows["version"]["value"])) == VERSION
    assert rows["header"]["offset"] == str(PRELUDE_SIZE)
    assert rows["payload"]["offset"] == f"{PRELUDE_SIZE} + header_len"

    header = {"id": 7, "method": "session.stats"}
    payload = b"tail"
    message = encode(FrameType.CALL, header, payload)

    def read(field: str) -> int:
        start, size = int(rows[field]["offset"]), int(rows[field]["size"])
        return int.from_bytes(message[start : start + size], "big")

    packed = msgpack.packb(header)
    assert read("magic") == MAGIC
    assert read("version") == VERSION
    assert read("type") == FrameType.CALL
    assert read("flags") == 0
    assert read("header_len") == len(packed)
    assert message[PRELUDE_SIZE : PRELUDE_SIZE + len(packed)] == packed
    assert message[PRELUDE_SIZE + len(packed) :] == payload


def test_check_order_answers_are_protocol_codes() -> None:
    rows = table("Message framing", "check")
    assert rows
    for row in rows:
        assert codes_in(row["answer"]) <= set(ErrorCode), row


# --- message types and their fields -------------------------------------------------

DIRECTIONS = {"c→s", "s→c"}


def test_message_types_and_codes() -> None:
    rows = table("Message types", "code")
    documented = {row["name"]: int(row["code"], 16) for row in rows}
    assert len(documented) == len(rows)
    assert documented == {t.name: t.value for t in FrameType}


def test_directions_match_what_a_client_may_send() -> None:
    for row in table("Message types", "code"):
        assert row["direction"] in DIRECTIONS, row
        type_ = FrameType[row["name"]]
        try:
            parse_client(Frame(type_, {}, memoryview(b"")))
        except ProtocolViolation as exc:
            server_only = exc.code is ErrorCode.BAD_FRAME and "servers only" in exc.message
        else:
            server_only = False
        assert server_only == (row["direction"] == "s→c"), row


def _fields_heading(type_: FrameType) -> str:
    direction = "c→s" if type_ in CLIENT_FULL else "s→c"
    return f"0x{type_.value:02X} {type_.name} ({direction})"


def field_rows(type_: FrameType) -> dict[str, Row]:
    rows = table(_fields_heading(type_), "field")
    names = [code_span(row["field"]) for row in rows]
    unique(names)
    return dict(zip(names, rows, strict=True))


def header_of(message: bytes) -> dict[str, Any]:
    return decode(message).header


TIMINGS = FrameTimings(queue_ms=1.0, pipeline_ms=2.0, total_ms=3.5)
LIMITS = Limits()

# A client message with every field, valid.
CLIENT_FULL: dict[FrameType, bytes] = {
    FrameType.HELLO: encode_hello(
        client="canvas/0.3",
        session="s1",
        resume="tok",
        pipeline="passthrough",
        drain=DrainStrategy.ALL,
        params={"a": 1},
    ),
    FrameType.FRAME: encode_frame(
        3, ContentType.RGB8, b"\x00" * 6, w=2, h=1, ts=12.5, params={"a": 1}
    ),
    FrameType.PARAMS: encode_params({"a": 1}),
    FrameType.CALL: encode_call(1, CallMethod.SESSION_STATS, {"x": 1}),
}

# Client messages with only the parsed view's fields, for the dataclass check.
CLIENT_VIEWS: dict[FrameType, set[str]] = {
    FrameType.HELLO: {f.name for f in fields(Hello)} | {"proto"},
    FrameType.FRAME: {f.name for f in fields(InputFrame)} - {"payload"},
    FrameType.PARAMS: {f.name for f in fields(ParamsUpdate)},
    FrameType.CALL: {f.name for f in fields(Call)},
}

# A server message with every field.
SERVER_FULL: dict[FrameType, list[bytes]] = {
    FrameType.WELCOME: [
        encode_welcome(
            session="s1",
            resume="tok",
            pipeline="passthrough",
            drain=DrainStrategy.LATEST,
            params={"a": 1},
            limits=LIMITS,
            credit=2,
        )
    ],
    FrameType.RESULT: [
        encode_result(
            3, ContentType.RGB8, b"\x00" * 6, timings=TIMINGS, superseded=2, w=2, h=1, credit=2
        )
    ],
    FrameType.REPLY: [
        encode_reply(1, {"ok": True}),
        encode_reply_error("c1", ErrorCode.NOT_FOUND, "no such method"),
    ],
    FrameType.EVENT: [encode_event(EventName.PIPELINE_READY, {"pipeline": "p"})],
    FrameType.ERROR: [encode_error(ErrorCode.BAD_CONTENT, "bad", seq=3, fatal=True)],
}

# A server message built with only what its builder requires.
SERVER_MINIMAL: dict[FrameType, list[bytes]] = {
    FrameType.WELCOME: [
        encode_welcome(
            session="s1",
            resume="tok",
            pipeline="passthrough",
            drain=DrainStrategy.LATEST,
            params={"a": 1},
            limits=LIMITS,
        )
    ],
    FrameType.RESULT: [encode_result(3, ContentType.JPEG, b"\xff", timings=TIMINGS)],
    FrameType.REPLY: SERVER_FULL[FrameType.REPLY],
    FrameType.EVENT: [encode_event(EventName.PIPELINE_READY)],
    FrameType.ERROR: [encode_error(ErrorCode.BAD_FRAME, "bad")],
}


def test_every_type_has_a_field_table() -> None:
    assert set(CLIENT_FULL) | set(SERVER_FULL) == set(FrameType)
    headings = {h for h, _, _ in TABLES if re.match(r"0x[0-9A-F]{2} ", h)}
    assert headings == {_fields_heading(t) for t in FrameType}


@pytest.mark.parametrize("type_", list(FrameType), ids=lambda t: t.name)
def test_documented_fields_are_the_encoded_fields(type_: FrameType) -> None:
    documented = set(field_rows(type_))
    messages = [CLIENT_FULL[type_]] if type_ in CLIENT_FULL else SERVER_FULL[type_]
    encoded = set().union(*(header_of(m) for m in messages))
    assert documented == encoded
    if type_ in CLIENT_VIEWS:
        assert documented == CLIENT_VIEWS[type_]


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "uint": lambda v: type(v) is int and v >= 0,
    "str": lambda v: type(v) is str,
    "map": lambda v: isinstance(v, dict) and all(type(k) is str for k in v),
    "number": lambda v: type(v) in (int, float),
    "bool": lambda v: type(v) is bool,
    "any": lambda v: True,
    "uint or str": lambda v: (type(v) is int and v >= 0) or type(v) is str,
}


@pytest.mark.parametrize("type_", list(FrameType), ids=lambda t: t.name)
def test_documented_field_types(type_: FrameType) -> None:
    rows = field_rows(type_)
    messages = [CLIENT_FULL[type_]] if type_ in CLIENT_FULL else SERVER_FULL[type_]
    for message in messages:
        for name, value in header_of(message).items():
            check = _TYPE_CHECKS[rows[name]["type"]]
            assert check(value), (name, rows[name]["type"], value)


REQUIRED = {"yes", "no", "raw only", "one of"}


def _parses(type_: FrameType, header: dict[str, Any], payload: bytes) -> bool:
    try:
        parse_client(Frame(type_, header, memoryview(payload)))
    except ProtocolViolation:
        return False
    return True


@pytest.mark.parametrize("type_", list(CLIENT_FULL), ids=lambda t: t.name)
def test_required_client_fields_are_enforced(type_: FrameType) -> None:
    full = decode(CLIENT_FULL[type_])
    variants = [(dict(full.header), bytes(full.payload), True)]
    if type_ is FrameType.FRAME:  # the same frame as an encoded image: w and h optional
        variants.append(({**full.header, "ct": "image/png"}, b"\x89PNG", False))
    for header, payload, raw in variants:
        assert _parses(type_, header, payload)
        for name, row in field_rows(type_).items():
            assert row["required"] in REQUIRED - {"one of"}, row
            required = row["required"] == "yes" or (row["required"] == "raw only" and raw)
            without = {k: v for k, v in header.items() if k != name}
            assert _parses(type_, without, payload) != required, (name, raw)


@pytest.mark.parametrize("type_", list(SERVER_MINIMAL), ids=lambda t: t.name)
def test_required_server_fields_are_always_sent(type_: FrameType) -> None:
    rows = field_rows(type_)
    assert {row["required"] for row in rows.values()} <= REQUIRED - {"raw only"}
    always = {name for name, row in rows.items() if row["required"] == "yes"}
    sometimes = {name for name, row in rows.items() if row["required"] == "no"}
    one_of = {name for name, row in rows.items() if row["required"] == "one of"}
    for message in SERVER_MINIMAL[type_]:
        keys = set(header_of(message))
        assert always <= keys
        assert not keys & sometimes
        if one_of:
            assert len(keys & one_of) == 1


def test_call_args_default_to_an_empty_map() -> None:
    assert field_rows(FrameType.CALL)["args"]["default"] == "`{}`"
    header = {"id": 1, "method": "session.stats"}
    call = parse_client(Frame(FrameType.CALL, header, memoryview(b"")))
    assert isinstance(call, Call)
    assert call.args == {}


def test_timings_fields() -> None:
    documented = unique(column("Timings", "field"))
    assert documented == {f.name for f in fields(FrameTimings)}
    t = header_of(SERVER_FULL[FrameType.RESULT][0])["t"]
    assert set(t) == documented


# --- vocabularies -------------------------------------------------------------------


def test_content_types_and_their_pixel_sizes() -> None:
    rows = table("Content types", "content type")
    documented = {code_span(row["content type"]): row for row in rows}
    assert len(documented) == len(rows)
    assert set(documented) == set(ContentType)
    for ct in ContentType:
        row = documented[ct]
        size = None if row["bytes per pixel"] == "—" else int(row["bytes per pixel"])
        assert size == ct.channels, ct
        assert row["kind"] == ("encoded" if ct.channels is None else "raw"), ct


def test_drains() -> None:
    documented = unique(column("Frames, drains and backpressure", "drain"))
    assert documented == set(DrainStrategy)


def test_error_codes() -> None:
    rows = table("Error codes", "code")
    assert unique([code_span(row["code"]) for row in rows]) == set(ErrorCode)
    assert all(row["fatal"] and row["sent when"] for row in rows)


def test_close_codes() -> None:
    rows = table("Closing", "close code")
    documented = [int(row["close code"]) for row in rows]
    assert len(documented) == len(set(documented))
    assert set(documented) == set(CloseCode)


def test_event_names() -> None:
    assert unique(column("Event names", "event")) == set(EventName)


def test_call_methods() -> None:
    assert unique(column("CALL methods", "method")) == set(CallMethod)


def test_limits_and_their_defaults() -> None:
    rows = table("Limits", "field")
    documented = {code_span(row["field"]): row for row in rows}
    assert len(documented) == len(rows)
    assert set(documented) == {f.name for f in fields(Limits)}
    assert set(header_of(SERVER_FULL[FrameType.WELCOME][0])["limits"]) == set(documented)
    for name, row in documented.items():
        first_number = re.match(r"\d+", row["default"])
        assert first_number, row
        assert int(first_number.group()) == Settings.model_fields[name].default, name


# --- the worked example -------------------------------------------------------------

_EXAMPLE = re.compile(
    r"```hex\n(?P<hex>.*?)```\s*\n"
    r"Decoded: \*\*(?P<type>\w+)\*\*, header `(?P<header>\{.*?\})`, "
    r"(?:payload `(?P<payload>[0-9a-f ]+)`|no payload)\.",
    re.DOTALL,
)


def _hex_bytes(block: str) -> bytes:
    """The bytes of an annotated hex dump: each line is bytes, two spaces, a comment."""
    data = bytearray()
    for line in block.splitlines():
        part = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        tokens = part.split()
        assert tokens, line
        assert all(re.fullmatch(r"[0-9a-f]{2}", t) for t in tokens), line
        data += bytes.fromhex(part)
    return bytes(data)


EXAMPLES = list(_EXAMPLE.finditer(DOC))


def test_the_worked_example_is_there() -> None:
    assert [m["type"] for m in EXAMPLES] == ["HELLO", "FRAME"]
    assert DOC.count("```hex") == len(EXAMPLES)  # every dump is checked below


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: m["type"])
def test_worked_example_decodes_to_what_the_page_says(example: re.Match[str]) -> None:
    data = _hex_bytes(example["hex"])
    header = json.loads(example["header"])
    payload = bytes.fromhex(example["payload"] or "")
    frame = decode(data)
    assert frame.type is FrameType[example["type"]]
    assert frame.header == header
    assert bytes(frame.payload) == payload
    assert encode(frame.type, header, payload) == data  # byte for byte what we send
    decode_client(data)  # and a valid client message


def test_worked_example_error_is_the_codecs() -> None:
    match = re.search(
        r"without `w`, the answer would have been an ERROR\s+with the header `(\{.*?\})`", DOC
    )
    assert match
    frame = next(m for m in EXAMPLES if m["type"] == "FRAME")
    header = {k: v for k, v in json.loads(frame["header"]).items() if k != "w"}
    data = encode(FrameType.FRAME, header, bytes.fromhex(frame["payload"]))
    with pytest.raises(ProtocolViolation) as info:
        decode_client(data)
    assert decode(info.value.encode()).header == json.loads(match.group(1))


def test_the_page_points_nowhere_outside_the_repository() -> None:
    outside = r"\.\./|https?://|(?<![\w.])/(?:work|home|farm|root|tmp)/"
    assert not re.search(outside, DOC)
