"""Ask round trips through Easel ``ActorRef``s, each beside a baseline from the same run.

Run: ``python -m ops.bench.actors [--seconds N] [--loop uvloop|asyncio|both]``; the
default runs every path on both event loops (the engine serves on uvloop). One ask is
in flight at a time, so
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
import uvloop

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


Samples = tuple[list[int], float]
"""Round-trip times in ns, and the seconds they spanned."""


def _result(path: str, samples: list[int], seconds: float) -> Result:
    cuts = statistics.quantiles(samples, n=100)
    return Result(path, len(samples), seconds, cuts[49] / 1000, cuts[98] / 1000)


def _time_blocking(seconds: float, call: Callable[[int], Any]) -> Samples:
    """Round trips of a blocking ``call`` from the current (non-loop) thread."""
    for i in range(50):  # warm up
        call(i)
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = now = clock()
    end = start + int(seconds * 1e9)
    i = 0
    while now < end:
        before = clock()
        call(i)
        now = clock()
        samples.append(now - before)
        i += 1
    return samples, (now - start) / 1e9


async def _time_async(seconds: float, call: Callable[[int], Awaitable[Any]]) -> Samples:
    """Round trips of ``await call(i)`` on the running loop."""
    for i in range(50):
        await call(i)
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = now = clock()
    end = start + int(seconds * 1e9)
    i = 0
    while now < end:
        before = clock()
        await call(i)
        now = clock()
        samples.append(now - before)
        i += 1
    return samples, (now - start) / 1e9


def _queue_call() -> tuple[Callable[[int], Awaitable[int]], asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def consumer() -> None:
        while True:
            message, future = await queue.get()
            future.set_result(message)

    async def call(message: int) -> int:
        future: asyncio.Future[int] = loop.create_future()
        queue.put_nowait((message, future))
        return await future

    return call, loop.create_task(consumer())


async def run(seconds: float, rounds: int = 10) -> list[Result]:
    """Measure every path and both baselines on this loop, about six times ``seconds``.

    The paths take turns in ``rounds`` short slices, so a baseline and the path
    compared with it see the same machine (on a small VM, thread wake-ups swing
    between ~15 µs and ~100 µs from one second to the next).
    """
    system = ActorSystem(ActorMetrics(new_registry()))
    loop_ref: ActorRef[int, int] = await system.spawn("/bench/loop", LoopEcho)
    thread_ref: ActorRef[int, int] = await system.spawn("/bench/thread", ThreadEcho)
    pykka_ref = PykkaEcho.start()
    queue_call, consumer = _queue_call()
    slice_ = seconds / rounds
    measures: dict[str, Callable[[], Awaitable[Samples]]] = {
        "loop→loop": lambda: _time_async(slice_, loop_ref.ask),
        "thread→loop": lambda: asyncio.to_thread(_time_blocking, slice_, loop_ref.ask_blocking),
        "asyncio.Queue (baseline)": lambda: _time_async(slice_, queue_call),
        "loop→thread": lambda: _time_async(slice_, thread_ref.ask),
        "thread→thread": lambda: asyncio.to_thread(_time_blocking, slice_, thread_ref.ask_blocking),
        "bare pykka (baseline)": lambda: asyncio.to_thread(_time_blocking, slice_, pykka_ref.ask),
    }
    totals: dict[str, tuple[list[int], float]] = {path: ([], 0.0) for path in measures}
    try:
        for _ in range(rounds):
            for path, measure in measures.items():
                samples, spent = await measure()
                kept, total = totals[path]
                kept.extend(samples)
                totals[path] = (kept, total + spent)
    finally:
        consumer.cancel()
        pykka_ref.stop()
        await system.shutdown(5.0)
    return [_result(path, samples, spent) for path, (samples, spent) in totals.items()]


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
    parser.add_argument("--loop", choices=("uvloop", "asyncio", "both"), default="both")
    args = parser.parse_args(argv)
    loops = ("uvloop", "asyncio") if args.loop == "both" else (args.loop,)
    for loop in loops:
        factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(run(args.seconds))
        print(f"\n{loop}: one ask in flight at a time; {args.seconds:g} s per path")
        print(table(results))


if __name__ == "__main__":
    main()
