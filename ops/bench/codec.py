"""Micro-benchmark of the protocol v1 codec against bare msgpack in the same run.

Run: ``python -m ops.bench.codec [--size BYTES] [--repeat N] [--number N]``.

Each row times one operation on a FRAME with a ``size``-byte payload two ways: the
baseline (bare ``msgpack.packb``/``unpackb`` of the same header, with a bytes concat
to build the message and a bytes slice to take the payload) and the codec. The ratio
is codec speed over baseline speed (above 1: the codec is faster), so the numbers
compare across machines.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable
from typing import NamedTuple

import msgpack

from transport import protocol as p

PARAMS = {"strength": 0.6, "seed": 7}
HEADER = {"seq": 1, "ct": "image/jpeg", "ts": 1234.5, "params": PARAMS}


class Case(NamedTuple):
    name: str
    baseline: Callable[[], object]
    codec: Callable[[], object]


def cases(payload: bytes) -> list[Case]:
    header = msgpack.packb(HEADER)
    message = header + payload
    framed = p.encode(p.FrameType.FRAME, HEADER, payload)
    n = len(header)

    def baseline_encode() -> bytes:
        return bytes(msgpack.packb(HEADER) + payload)

    def baseline_decode(data: bytes = message) -> object:
        return msgpack.unpackb(data[:n]), data[n:]

    return [
        Case(
            "encode + decode",
            lambda: baseline_decode(baseline_encode()),
            lambda: p.decode(p.encode(p.FrameType.FRAME, HEADER, payload)),
        ),
        Case("encode", baseline_encode, lambda: p.encode(p.FrameType.FRAME, HEADER, payload)),
        Case("decode", baseline_decode, lambda: p.decode(framed)),
        Case(
            "encode_frame + decode_client (validated)",
            lambda: baseline_decode(baseline_encode()),
            lambda: p.decode_client(
                p.encode_frame(1, p.ContentType.JPEG, payload, ts=1234.5, params=PARAMS)
            ),
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Protocol v1 codec micro-benchmark")
    parser.add_argument("--size", type=int, default=64 * 1024, help="payload bytes")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs (best is kept)")
    parser.add_argument("--number", type=int, default=20_000, help="operations per run")
    args = parser.parse_args(argv)

    number: int = args.number
    repeat: int = args.repeat

    def per_second(fn: Callable[[], object]) -> float:
        return number / min(timeit.repeat(fn, repeat=repeat, number=number))

    print(f"payload {args.size} bytes, best of {repeat} x {number} operations")
    print(f"{'operation':<42} {'baseline/s':>12} {'codec/s':>12} {'codec/baseline':>15}")
    for case in cases(os.urandom(args.size)):
        base, codec = per_second(case.baseline), per_second(case.codec)
        print(f"{case.name:<42} {base:>12,.0f} {codec:>12,.0f} {codec / base:>14.2f}x")


if __name__ == "__main__":
    main()
