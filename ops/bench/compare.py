"""The frame path of this checkout against another one, in the same run.

Run: ``python -m ops.bench.compare OTHER_TREE [--turns N] [--seconds S]``, where
``OTHER_TREE`` is a checkout of another commit, e.g. made with
``git worktree add ../before <commit>``. Three servers start as subprocesses (Easel
from OTHER_TREE, Easel from here, the raw echo baseline) and take turns under the
same loads as scenarios a (64 KiB, window 8, ``all``) and b (ping-pong), so machine
drift hits them alike. Prints each scenario's rows, the ratios of this tree to the
other and of each to echo, and each server's CPU per answered frame (Linux), which a
busy machine disturbs less than throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
from pathlib import Path

from ops.bench.load import Load, make_payload
from ops.bench.measure import measure_interleaved
from ops.bench.report import Row, format_table, ratios
from ops.bench.servers import spawned
from transport.protocol import DrainStrategy

__all__ = ["compare", "main"]

KIB = 1024


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(
    other: Path, turns: int, seconds: float
) -> list[tuple[str, list[Row], list[float]]]:
    """(scenario, rows [other, here, echo], server CPU microseconds per answered frame)."""
    loads = {
        "a. throughput, 64 KiB, window 8": Load(
            payload=make_payload(64 * KIB),
            window=8,
            drain=DrainStrategy.ALL,
            duration=seconds,
            warmup=0.2,
        ),
        "b. ping-pong, 64 KiB": Load(
            payload=make_payload(64 * KIB), window=1, drain=DrainStrategy.ALL, duration=seconds
        ),
    }
    results = []
    async with contextlib.AsyncExitStack() as servers:
        running = [
            await servers.enter_async_context(spawned("easel", tree=other)),
            await servers.enter_async_context(spawned("easel")),
            await servers.enter_async_context(spawned("echo")),
        ]
        labels = ("other tree", "this tree", "echo")
        targets = list(zip(running, labels, strict=True))
        for name, load in loads.items():
            start = [cpu_seconds(target.pid) for target in running]
            rows, _ = await measure_interleaved(targets, load, slices=turns, progress=False)
            used = [cpu_seconds(t.pid) - s for t, s in zip(running, start, strict=True)]
            per_frame = [u / max(row.answered, 1) * 1e6 for u, row in zip(used, rows, strict=True)]
            results.append((name, rows, per_frame))
    return results


def _p50(row: Row) -> float:
    return row.p50_ms or 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.compare", description=__doc__)
    parser.add_argument("other", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--turns", type=int, default=6, help="turns each server takes")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per load")
    args = parser.parse_args(argv)
    for name, rows, cpu in asyncio.run(compare(args.other.resolve(), args.turns, args.seconds)):
        print(f"\n== {name}")
        print(format_table(rows))
        other, here, echo = rows
        print(
            f"server CPU per answered frame: other {cpu[0]:.1f} us, this {cpu[1]:.1f} us, "
            f"echo {cpu[2]:.1f} us; this/other {cpu[1] / cpu[0] if cpu[0] else 0.0:.3f}"
        )
        if name.startswith("a."):
            print(
                "throughput: this/other "
                f"{ratios(here, other)['throughput_ratio'] or 0.0:.3f}; "
                f"other/echo {ratios(other, echo)['throughput_ratio'] or 0.0:.3f}; "
                f"this/echo {ratios(here, echo)['throughput_ratio'] or 0.0:.3f}"
            )
        else:
            print(
                f"p50 over echo: other +{_p50(other) - _p50(echo):.3f} ms, "
                f"this +{_p50(here) - _p50(echo):.3f} ms "
                f"(median of the three p50s {statistics.median(map(_p50, rows)):.3f} ms)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
