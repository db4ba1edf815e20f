"""Ask round trips through Easel ``ActorRef``s, each beside a baseline from the same run.

Run: ``python -m ops.bench.actors [--seconds N]``. One ask is in flight at a time, so
ops/s is 1 / mean round-trip time. Paths and their baselines:

* loop→loop, thread→loop   vs  a bare ``asyncio.Queue`` round trip (consumer task
  answering a future) — the cheapest way to hand work to a task on the loop;
* loop→thread, thread→thread vs bare pykka: ``pykka.ThreadingActor`` asked from a
  plain thread with ``ref.ask(msg)`` — what pykka alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pykka

from engine.actor import LoopActor, ThreadActor
from engine.metrics import ActorMetrics, new_registry
from engine.ref import ActorRef
from engine.system import ActorSystem

__all__ = ["Result", "main", "run"]


class LoopEcho(LoopActor[int, int]):
    async def receive(self, message: int) -> int:
        return message


class ThreadEcho(ThreadActor[int, int]):
    def receive(self, message: int) -> int:
        return message


class PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


@dataclass(frozen=True, slots=True)
class Result:
    path: str
    count: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def ops(self) -> float:
        return self.count / self.seconds


def _result(path: str, samples: list[int], seconds: float) -> Result:
    cuts = statistics.quantiles(samples, n=100)
    return Result(path, len(samples), seconds, cuts[49] / 1000, cuts[98] / 1000)


def _time_blocking(path: str, seconds: float, call: Callable[[int], Any]) -> Result:
    """Round trips of a blocking ``call`` from the current (non-loop) thread."""
    for i in range(200):  # warm up
        call(i)
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(seconds * 1e9)
    i = 0
    now = start
    while now < end:
        before = clock()
        call(i)
        now = clock()
        samples.append(now - before)
        i += 1
    return _result(path, samples, (now - start) / 1e9)


async def _time_async(path: str, seconds: float, call: Callable[[int], Awaitable[Any]]) -> Result:
    """Round trips of ``await call(i)`` on the running loop."""
    for i in range(200):
        await call(i)
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(seconds * 1e9)
    i = 0
    now = start
    while now < end:
        before = clock()
        await call(i)
        now = clock()
        samples.append(now - before)
        i += 1
    return _result(path, samples, (now - start) / 1e9)


async def _queue_baseline(seconds: float) -> Result:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def consumer() -> None:
        while True:
            message, future = await queue.get()
            future.set_result(message)

    task = loop.create_task(consumer())

    async def call(message: int) -> int:
        future: asyncio.Future[int] = loop.create_future()
        queue.put_nowait((message, future))
        return await future

    try:
        return await _time_async("asyncio.Queue (baseline)", seconds, call)
    finally:
        task.cancel()


def _pykka_baseline(seconds: float) -> Result:
    ref = PykkaEcho.start()
    try:
        return _time_blocking("bare pykka (baseline)", seconds, ref.ask)
    finally:
        ref.stop()


async def run(seconds: float) -> list[Result]:
    """Measure every path and both baselines on this loop; about six times ``seconds``."""
    system = ActorSystem(ActorMetrics(new_registry()))
    loop_ref: ActorRef[int, int] = await system.spawn("/bench/loop", LoopEcho)
    thread_ref: ActorRef[int, int] = await system.spawn("/bench/thread", ThreadEcho)
    try:
        queue = await _queue_baseline(seconds)
        bare = await asyncio.to_thread(_pykka_baseline, seconds)
        loop_loop = await _time_async("loop→loop", seconds, loop_ref.ask)
        loop_thread = await _time_async("loop→thread", seconds, thread_ref.ask)
        thread_loop = await asyncio.to_thread(
            _time_blocking, "thread→loop", seconds, loop_ref.ask_blocking
        )
        thread_thread = await asyncio.to_thread(
            _time_blocking, "thread→thread", seconds, thread_ref.ask_blocking
        )
    finally:
        await system.shutdown(5.0)
    return [loop_loop, thread_loop, queue, loop_thread, thread_thread, bare]


BASELINE = {
    "loop→loop": "asyncio.Queue (baseline)",
    "thread→loop": "asyncio.Queue (baseline)",
    "loop→thread": "bare pykka (baseline)",
    "thread→thread": "bare pykka (baseline)",
}
TARGET = {"loop→loop": 0.5, "loop→thread": 0.5}


def table(results: list[Result]) -> str:
    by_path = {r.path: r for r in results}
    lines = [
        f"{'path':<26}{'ops/s':>10}{'p50 µs':>9}{'p99 µs':>9}  ratio vs baseline",
        "-" * 72,
    ]
    for r in results:
        ratio = ""
        baseline = BASELINE.get(r.path)
        if baseline is not None:
            value = r.ops / by_path[baseline].ops
            target = TARGET.get(r.path)
            verdict = "" if target is None else (" ok" if value >= target else " MISSED")
            goal = "" if target is None else f" (target ≥ {target:.0%})"
            ratio = f"{value:6.1%}{goal}{verdict}"
        lines.append(f"{r.path:<26}{r.ops:>10,.0f}{r.p50_us:>9.1f}{r.p99_us:>9.1f}  {ratio}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.actors", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per path (default 2)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.seconds))
    print(f"one ask in flight at a time; {args.seconds:g} s per path")
    print(table(results))


if __name__ == "__main__":
    main()
