"""Micro-benchmark of the protocol v1 codec against bare msgpack in the same run.

Run: ``python -m ops.bench.codec [--size BYTES] [--repeat N] [--number N]``.

Each case encodes and decodes one FRAME with a ``size``-byte payload; the table shows
round trips per second and the ratio to the baseline (``msgpack.packb`` of the same
header plus a bytes concat, then ``msgpack.unpackb`` plus a payload slice), so the
numbers compare across machines.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

import msgpack

from transport import protocol as p

PARAMS = {"strength": 0.6, "seed": 7}
HEADER = {"seq": 1, "ct": "image/jpeg", "ts": 1234.5, "params": PARAMS}


def cases(payload: bytes) -> dict[str, Callable[[], object]]:
    def baseline() -> object:
        header = msgpack.packb(HEADER)
        data = header + payload
        n = len(header)
        return msgpack.unpackb(data[:n]), data[n:]

    def envelope() -> object:
        return p.decode(p.encode(p.FrameType.FRAME, HEADER, payload))

    def typed() -> object:
        data = p.encode_frame(1, p.ContentType.JPEG, payload, ts=1234.5, params=PARAMS)
        return p.decode_client(data)

    return {
        "baseline: packb+concat / unpackb+slice": baseline,
        "encode + decode": envelope,
        "encode_frame + decode_client (validated)": typed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=64 * 1024, help="payload bytes")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs (best is kept)")
    parser.add_argument("--number", type=int, default=20_000, help="round trips per run")
    args = parser.parse_args(argv)

    payload = os.urandom(args.size)
    results: list[tuple[str, float]] = []
    for name, case in cases(payload).items():
        best = min(timeit.repeat(case, repeat=args.repeat, number=args.number)) / args.number
        results.append((name, best))

    base = results[0][1]
    print(f"payload {args.size} bytes, best of {args.repeat} x {args.number} round trips")
    print(f"{'case':<44} {'round trips/s':>14} {'µs each':>9} {'vs baseline':>12}")
    for name, seconds in results:
        print(f"{name:<44} {1 / seconds:>14,.0f} {seconds * 1e6:>9.2f} {base / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
