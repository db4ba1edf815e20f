"""Fuzz the live endpoint: mutated and random messages never crash the server or the
session, and every answer is a documented ERROR code (or a RESULT/REPLY)."""

from __future__ import annotations

import random

from tests.support import Easel, png
from transport.protocol import (
    ContentType,
    ErrorCode,
    FrameType,
    decode,
    encode_call,
    encode_frame,
    encode_hello,
    encode_params,
)

DOCUMENTED = {code.value for code in ErrorCode}


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    action = rng.randrange(5)
    if action == 0 and data:
        for _ in range(rng.randint(1, 4)):
            index = rng.randrange(len(data))
            data[index] ^= 1 << rng.randrange(8)
    elif action == 1:
        data = data[: rng.randrange(len(data) + 1)]
    elif action == 2 and len(data) >= 8:
        data[4:8] = rng.randrange(2**32).to_bytes(4, "big")
    elif action == 3:
        data = bytearray(rng.randbytes(rng.randrange(64)))
    else:
        data += rng.randbytes(rng.randrange(16))
    return bytes(data)


async def test_mutated_messages_get_documented_answers_and_the_session_lives(
    easel: Easel,
) -> None:
    created = await easel.session(pipeline="imagefx", drain="all")
    headers = {"Authorization": f"Bearer {created['token']}"}
    url = easel.url + f"/api/v1/sessions/{created['id']}/ws"
    image = png()
    seeds = [
        encode_frame(10**6, ContentType.PNG, image, params={"effect": "invert"}),
        encode_frame(10**6, ContentType.RGB8, b"\x00" * 12, w=2, h=2),
        encode_params({"effect": "blur", "radius": 2}),
        encode_call(1, "session.stats", {}),
        encode_hello(session=created["id"], resume=created["token"]),
    ]
    rng = random.Random(20261122)
    answers: dict[str, int] = {}
    async with easel.http.ws_connect(url, protocols=("easel.v1",), headers=headers) as ws:
        assert decode(await ws.receive_bytes()).type is FrameType.WELCOME
        for round_ in range(300):
            await ws.send_bytes(mutate(rng, seeds))
            marker = f"m{round_}"
            await ws.send_bytes(encode_call(marker, "session.stats", {}))
            while True:
                frame = decode(await ws.receive_bytes())
                if frame.type is FrameType.REPLY and frame.header.get("id") == marker:
                    assert "result" in frame.header
                    break
                if frame.type is FrameType.ERROR:
                    assert frame.header["code"] in DOCUMENTED
                    assert frame.header["fatal"] is False
                    answers[frame.header["code"]] = answers.get(frame.header["code"], 0) + 1
                elif frame.type is FrameType.REPLY and "error" in frame.header:
                    assert frame.header["error"]["code"] in DOCUMENTED
                else:
                    assert frame.type in (FrameType.RESULT, FrameType.REPLY, FrameType.WELCOME)
        assert not ws.closed
    assert answers.get("bad_frame", 0) > 0  # the fuzzer did reach the decoder's checks
    assert len(answers) >= 3
    status, session = await easel.request("GET", f"/api/v1/sessions/{created['id']}")
    assert status == 200
    assert session["attached"] is False
