"""The JavaScript client's own tests (``tests/js``, node's test runner), against a live engine.

The node tests include ``tests/js/live.test.mjs``, which talks to the real server the
``easel`` fixture starts (its URL in ``EASEL_URL``). ``tests/js/vectors.json`` holds
frames made by the Python codec; the JS tests decode and re-encode them, and
:func:`test_the_shared_vectors_are_what_the_python_codec_makes` keeps the file honest.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerFactory
from transport.protocol import (
    ContentType,
    DrainStrategy,
    ErrorCode,
    EventName,
    FrameTimings,
    FrameType,
    Limits,
    decode,
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
)

JS_TESTS = Path(__file__).resolve().parents[1] / "js"
VECTORS = JS_TESTS / "vectors.json"


def node_or_skip() -> str:
    """The node binary; without one the tests are skipped, except in CI (a failure)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (scripts/check installs it)")
        pytest.skip("node is not installed (scripts/check installs it)")
    return node


def node_flags(node: str) -> list[str]:
    """Node 20 and 21 have their WebSocket client behind a flag; 22 and later have it on,
    and older ones lack it (``tests/js/node-websocket.mjs`` stands in)."""
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major in (20, 21) else []


def vectors() -> list[dict[str, Any]]:
    """Frames as the Python codec encodes them; ``c2s`` ones must encode identically in JS."""
    made: list[tuple[str, str, bytes]] = [
        (
            "hello",
            "c2s",
            encode_hello(
                client="easel-js/1",
                pipeline="imagefx",
                drain=DrainStrategy.ALL,
                params={"effect": "invert", "strength": 0.5},
            ),
        ),
        ("frame", "c2s", encode_frame(7, ContentType.PNG, b"\x89PNG\r\n", ts=1234.5)),
        (
            "frame_raw",
            "c2s",
            encode_frame(
                300, ContentType.RGB8, bytes(range(12)), w=2, h=2, params={"effect": "blur"}
            ),
        ),
        ("params", "c2s", encode_params({"effect": "sketch", "radius": 2.5})),
        ("call", "c2s", encode_call(3, "session.params", {"set": {"bits": 4}})),
        ("call_no_header", "c2s", encode(FrameType.CALL, {})),
        (
            "welcome",
            "s2c",
            encode_welcome(
                session="s1",
                resume="tok",
                pipeline="imagefx",
                drain=DrainStrategy.LATEST,
                params={"effect": "none"},
                limits=Limits(max_inflight=1),
            ),
        ),
        (
            "result",
            "s2c",
            encode_result(
                7, ContentType.PNG, b"out", timings=FrameTimings(1.0, 2.5, 4.0), superseded=2
            ),
        ),
        (
            "result_raw",
            "s2c",
            encode_result(
                70000,
                ContentType.RGBA8,
                bytes(16),
                timings=FrameTimings(0.25, 0.5, 1.0),
                w=2,
                h=2,
            ),
        ),
        ("reply", "s2c", encode_reply(3, {"effect": "none", "bits": 4})),
        ("reply_error", "s2c", encode_reply_error("x1", ErrorCode.NOT_FOUND, "no such method")),
        ("event", "s2c", encode_event(EventName.SESSION_CLOSED, {"reason": "deleted"})),
        ("error", "s2c", encode_error(ErrorCode.BAD_CONTENT, "empty image payload", seq=9)),
        ("error_fatal", "s2c", encode_error(ErrorCode.UNAUTHORIZED, "bad token", fatal=True)),
    ]
    out = []
    for name, direction, message in made:
        header_len = int.from_bytes(message[4:8], "big")
        frame = decode(message)
        out.append(
            {
                "name": name,
                "direction": direction,
                "type": message[2],
                "header": frame.header,
                "payload": message[8 + header_len :].hex(),
                "message": message.hex(),
            }
        )
    return out


def test_the_shared_vectors_are_what_the_python_codec_makes() -> None:
    stored = json.loads(VECTORS.read_text())
    assert stored == vectors(), "regenerate: .venv/bin/python -m tests.transport.test_js_client"


_SUMMARY = re.compile(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$", re.MULTILINE)


async def run_node_tests(files: list[Path], env: dict[str, str]) -> dict[str, int]:
    """Run ``node --test`` on ``files``; assert it passed; the TAP summary's counts."""
    node = node_or_skip()
    process = await asyncio.create_subprocess_exec(
        node,
        *node_flags(node),
        "--test",
        "--test-reporter=tap",
        *map(str, files),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=JS_TESTS,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=100)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    summary = {key: int(value) for key, value in _SUMMARY.findall(text)}
    assert process.returncode == 0, text
    assert summary.get("fail") == 0, text
    assert summary.get("skipped") == 0, text  # the live tests ran too
    return summary


async def test_the_js_client_tests_pass_against_a_live_engine(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(insecure=True)  # the protocol, not auth (test_auth.py)
    files = sorted(JS_TESTS.glob("*.test.mjs"))
    assert {f.name for f in files} >= {"codec.test.mjs", "client.test.mjs", "live.test.mjs"}
    summary = await run_node_tests(files, {"EASEL_URL": easel.url})
    assert summary.get("pass", 0) >= 40, summary


async def test_the_live_tests_pass_with_the_stand_in_websocket(
    easel_factory: ServerFactory,
) -> None:
    easel = await easel_factory(insecure=True)
    summary = await run_node_tests(
        [JS_TESTS / "live.test.mjs"], {"EASEL_URL": easel.url, "EASEL_NODE_WEBSOCKET": "shim"}
    )
    assert summary.get("pass", 0) >= 10, summary


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(vectors(), indent=1) + "\n")
