"""``python -m ops.bench.hosting``: what each ``hosting`` costs per frame, same run.

One client, one frame in flight (ping-pong, ``all`` drain), against one server
(``easel serve`` as a subprocess): ``passthrough`` and ``simulated`` (20 ms) under
each host kind that applies (``loop`` only suits non-blocking kinds; ``ray`` with
``--ray``, the server then starts a local Ray), then
``passthrough`` under ``thread`` and ``process`` with payloads of 64 KiB to 4 MiB
(what crossing the pipe to a child costs). Printed: each row, and each host's p50
against ``thread``'s for the same pipeline and payload.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from ops.bench.load import Load, make_payload
from ops.bench.measure import PipelineSpec, measure
from ops.bench.report import Row, format_table
from ops.bench.servers import in_process, spawned
from transport.protocol import ContentType, DrainStrategy

__all__ = ["Case", "cases", "main"]

KIB = 1024


@dataclass(frozen=True)
class Case:
    kind: str
    hosting: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.hosting}-{self.size // KIB}k"


def cases(sizes: tuple[int, ...], ray: bool = False) -> list[Case]:
    """Every (kind, hosting) pair that can run, at 64 KiB; passthrough at every size."""
    remote = ("thread", "process", "ray") if ray else ("thread", "process")
    found = [Case("passthrough", hosting, 64 * KIB) for hosting in ("loop", *remote)]
    found += [Case("simulated", hosting, 64 * KIB) for hosting in remote]
    for size in sizes:
        if size != 64 * KIB:
            found += [Case("passthrough", hosting, size) for hosting in ("thread", "process")]
    return found


async def run(
    duration: float, sizes: tuple[int, ...], spawn: bool, ray: bool = False
) -> list[tuple[Case, Row]]:
    rows: list[tuple[Case, Row]] = []
    server = spawned("easel") if spawn else in_process("easel")
    async with server as target:
        for case in cases(sizes, ray):
            options = {"cost_ms": 20.0} if case.kind == "simulated" else {}
            spec = PipelineSpec(case.name, case.kind, 1, None, options, case.hosting)
            load = Load(
                payload=make_payload(case.size),
                content_type=ContentType.JPEG,
                rate=None,
                window=1,
                pipeline=case.name,
                drain=DrainStrategy.ALL,
                duration=duration,
                warmup=0.5,
            )
            row = await measure(target, load, label=case.name, pipeline=spec, progress=False)
            rows.append((case, row))
    return rows


def overheads(rows: list[tuple[Case, Row]]) -> list[str]:
    """Each host's p50 against ``thread`` for the same kind and payload size."""
    thread = {(c.kind, c.size): r for c, r in rows if c.hosting == "thread"}
    lines = []
    for case, row in rows:
        base = thread.get((case.kind, case.size))
        if case.hosting == "thread" or base is None or not base.p50_ms or not row.p50_ms:
            continue
        lines.append(
            f"{case.kind:<12} {case.size // KIB:>5} KiB  {case.hosting:<8} "
            f"p50 {row.p50_ms:8.3f} ms vs thread {base.p50_ms:8.3f} ms: "
            f"{row.p50_ms - base.p50_ms:+.3f} ms per frame"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.hosting", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per row")
    parser.add_argument("--sizes", default="64,256,1024,4096", help="KiB, comma-separated")
    parser.add_argument("--in-process", action="store_true", help="serve Easel in this process")
    parser.add_argument("--ray", action="store_true", help="also ray hosting (local Ray)")
    args = parser.parse_args(argv)
    sizes = tuple(int(part) * KIB for part in args.sizes.split(","))
    rows = asyncio.run(run(args.duration, sizes, not args.in_process, args.ray))
    print(format_table([row for _, row in rows]))
    for line in overheads(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
