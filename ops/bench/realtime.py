"""The realtime benchmark scenarios, each against its same-run baseline.

Run: ``python -m ops.bench.realtime [--quick] [--only a,b…] [--profile DIR] [--json FILE]``.

Servers run as subprocesses (``easel serve``, ``python -m ops.bench.echo``) so the
load generator does not share their loop, and so their RSS is their own. Each
scenario prints its table as soon as it finishes:

a. one client, 64 KiB frames, pipelined: Easel ``passthrough`` vs raw echo throughput;
b. ping-pong (window 1): Easel p50 vs echo p50;
c. 200 sessions x 10 fps of 512x512 JPEG through ``imagefx`` (invert);
d. one client at twice a ``simulated`` pipeline's capacity, ``latest`` and ``all``;
e. 8 clients on ``simulated`` (cost 20 ms + 1 ms per extra item), max_batch 8 vs 1;
f. uvloop vs asyncio under a and b, and orjson vs json for REST JSON bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import queue
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from actors.plugins import FrameIn, PipelineConfig
from actors.plugins.imagefx import ImageFx, ImageFxParams
from ops.bench.load import Load, make_payload
from ops.bench.measure import PipelineSpec, measure, measure_interleaved
from ops.bench.report import Row, format_table, ratios
from ops.bench.servers import spawned
from transport.client_cli import make_jpeg
from transport.protocol import DrainStrategy

KIB = 1024


@dataclass
class Outcome:
    """One scenario's rows, ratios and verdicts."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        print(f"\n== {self.name}")
        if self.rows:
            print(format_table(self.rows))
        for note in self.notes:
            print(f"   {note}")
        sys.stdout.flush()


@dataclass(frozen=True)
class Plan:
    quick: bool
    profile: Path | None

    def seconds(self, quick: float, full: float) -> float:
        return quick if self.quick else full


async def _row(
    kind: str,
    load: Load,
    label: str,
    *,
    loop: str = "asyncio",
    settings: dict[str, Any] | None = None,
    pipeline: PipelineSpec | None = None,
    profile: Path | None = None,
) -> Row:
    async with spawned(kind, settings, loop=loop, profile=profile) as target:
        return await measure(target, load, label=label, pipeline=pipeline)


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


async def throughput(plan: Plan, loop: str = "asyncio") -> Outcome:
    load = Load(
        payload=make_payload(64 * KIB),
        window=8,
        drain=DrainStrategy.ALL,
        duration=plan.seconds(4, 10),
        warmup=0.2,
    )
    slices = plan.seconds(4, 10)
    profile = None if plan.profile is None else plan.profile / f"a-{loop}.txt"
    out = Outcome(
        f"a. throughput: 1 client, 64 KiB, window 8, drain all, loop {loop} "
        f"(targets take {slices:.0f} turns each)"
    )
    async with contextlib.AsyncExitStack() as servers:
        easel = await servers.enter_async_context(spawned("easel", loop=loop, profile=profile))
        narrow = await servers.enter_async_context(spawned("easel", {"max_inflight": 1}, loop=loop))
        echo = await servers.enter_async_context(spawned("echo", loop=loop))
        labels = [f"easel/{loop}", f"easel/{loop} inflight=1", f"echo/{loop}"]
        out.rows, turns = await measure_interleaved(
            list(zip((easel, narrow, echo), labels, strict=True)), load, slices=int(slices)
        )
    for index, row in enumerate(out.rows[:2]):
        ratio = ratios(row, out.rows[2])["throughput_ratio"] or 0.0
        each = [ratios(turn[index], turn[2])["throughput_ratio"] or 0.0 for turn in turns]
        out.notes.append(
            f"{row.label}: {ratio:.1%} of echo throughput (target >= 50%): "
            f"{_verdict(ratio >= 0.5)}; per turn {min(each):.1%} .. {max(each):.1%}"
        )
    return out


async def ping_pong(plan: Plan, loop: str = "asyncio") -> Outcome:
    load = Load(
        payload=make_payload(64 * KIB),
        window=1,
        drain=DrainStrategy.ALL,
        duration=plan.seconds(3, 10),
    )
    profile = None if plan.profile is None else plan.profile / f"b-{loop}.txt"
    out = Outcome(f"b. ping-pong: 1 client, 64 KiB, window 1, loop {loop}")
    easel = await _row("easel", load, f"easel/{loop}", loop=loop, profile=profile)
    echo = await _row("echo", load, f"echo/{loop}", loop=loop)
    out.rows = [easel, echo]
    delta = ratios(easel, echo)["p50_delta_ms"]
    ok = delta is not None and delta <= 0.25
    out.notes.append(
        f"Easel p50 - echo p50 = {_fmt(delta, ' ms')} (target <= 0.250 ms): {_verdict(ok)}"
    )
    return out


async def many_sessions(plan: Plan) -> Outcome:
    load = Load(
        payload=make_jpeg(512, 512),
        clients=200,
        rate=10.0,
        pipeline="imagefx",
        params={"effect": "invert"},
        duration=plan.seconds(4, 15),
        warmup=1.0,
        grace=10.0,
    )
    out = Outcome(
        f"c. 200 sessions x 10 fps, 512x512 JPEG ({len(load.payload) // KIB} KiB), imagefx invert"
    )
    cost_ms = await asyncio.to_thread(imagefx_cost_ms, load.payload)
    cores = os.cpu_count() or 1
    fx2 = PipelineSpec("fx2", "imagefx", replicas=2)
    out.rows.append(await _row("easel", load, "easel latest"))
    # under `all` nothing is dropped: give the backlog time to drain, so "answered"
    # shows that, and the latency columns show what the backlog costs
    everything = replace(load, drain=DrainStrategy.ALL, grace=60.0)
    out.rows.append(await _row("easel", everything, "easel all"))
    if not plan.quick:
        out.rows.append(await _row("easel", load, "easel latest, 2 replicas", pipeline=fx2))
    # what this machine can serve: half its cores' worth of imagefx (the load generator
    # and the WebSocket work need the rest), at the same 10 fps per session
    rate = load.rate or 1.0
    fits = max(1, int(0.5 * cores * 1000.0 / cost_ms / rate))
    sized = replace(load, clients=fits, pipeline="fx2", drain=DrainStrategy.ALL)
    out.rows.append(
        await _row("easel", sized, f"easel all, 2 replicas, {fits} sessions", pipeline=fx2)
    )
    wanted = load.clients * rate
    out.notes.append(
        f"imagefx costs {cost_ms:.2f} ms of CPU per frame here (decode, invert, encode; one "
        f"thread): {wanted:.0f} fps need {wanted * cost_ms / 1000.0:.1f} cores for imagefx "
        f"alone; this machine has {cores}, shared with the load generator"
    )
    for row in out.rows:
        every = row.answered == row.sent and not row.errors and not row.unanswered
        out.notes.append(
            f"{row.label}: every frame answered: {'yes' if every else 'no'} "
            f"({row.answered}/{row.sent} answered, {row.superseded} superseded, "
            f"{row.unanswered} unanswered, {row.sent / load.duration / row.clients:.1f} fps "
            "sent per client); "
            f"p99 {_fmt(row.p99_ms, ' ms')}, loop lag p99 {_fmt(row.loop_lag_p99_ms, ' ms')}"
        )
    return out


def imagefx_cost_ms(jpeg: bytes, frames: int = 100) -> float:
    """CPU milliseconds ``imagefx`` spends on one frame of ``jpeg`` (invert), in process."""
    fx = ImageFx(PipelineConfig(name="cost", kind="imagefx"))
    fx.load()
    frame = FrameIn(jpeg, "image/jpeg", None, None, ImageFxParams(effect="invert"))
    fx.process([frame])  # warm up
    started = time.process_time()
    for _ in range(frames):
        fx.process([frame])
    return (time.process_time() - started) * 1000.0 / frames


async def overload(plan: Plan) -> Outcome:
    cost = 20.0
    spec = PipelineSpec("sim20", "simulated", max_batch=1, options={"cost_ms": cost})
    load = Load(
        payload=make_jpeg(512, 512),
        rate=100.0,
        pipeline="sim20",
        duration=plan.seconds(5, 20),
        grace=30.0,
    )
    out = Outcome(f"d. 1 client at 100 fps, simulated {cost:.0f} ms/frame (capacity 50 fps)")
    for drain in (DrainStrategy.LATEST, DrainStrategy.ALL):
        out.rows.append(
            await _row("easel", replace(load, drain=drain), f"easel {drain}", pipeline=spec)
        )
    latest, every = out.rows
    ok = latest.p99_ms is not None and latest.p99_ms <= 3 * cost
    out.notes.append(
        f"latest: p99 {_fmt(latest.p99_ms, ' ms')} <= {3 * cost:.0f} ms: {_verdict(ok)}"
    )
    if every.rss_start_mib is not None and every.rss_peak_mib is not None:
        growth = every.rss_peak_mib - every.rss_start_mib
        out.notes.append(
            f"all: server RSS start {every.rss_start_mib:.1f} / peak {every.rss_peak_mib:.1f} / "
            f"end {every.rss_end_mib:.1f} MiB (growth {growth:+.1f} MiB; flat if < 16 MiB: "
            f"{_verdict(growth < 16)})"
        )
    return out


async def batching(plan: Plan) -> Outcome:
    options = {"cost_ms": 20.0, "per_item_ms": 1.0}
    load = Load(
        payload=make_payload(16 * KIB),
        clients=8,
        window=2,
        drain=DrainStrategy.ALL,
        duration=plan.seconds(4, 15),
    )
    out = Outcome("e. 8 clients, simulated 20 ms + 1 ms/extra item, window 2, drain all")
    for batch in (8, 1):
        spec = PipelineSpec(f"sim-b{batch}", "simulated", max_batch=batch, options=options)
        row = await _row(
            "easel", replace(load, pipeline=spec.name), f"max_batch {batch}", pipeline=spec
        )
        out.rows.append(row)
    on, off = out.rows
    out.notes.append(f"batching on/off: {on.fps / off.fps if off.fps else 0:.2f}x aggregate fps")
    return out


async def _hop(rounds: int) -> float:
    """Median seconds for loop -> worker thread -> loop, the pipeline hop's mechanism."""
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            loop.call_soon_threadsafe(job.set_result, None)

    worker = threading.Thread(target=work)
    worker.start()
    times = []
    for _ in range(rounds):
        done = loop.create_future()
        start = time.perf_counter()
        jobs.put(done)
        await done
        times.append(time.perf_counter() - start)
    jobs.put(None)
    worker.join()
    return statistics.median(times)


def hop_bench(rounds: int = 2000, repeat: int = 5) -> list[str]:
    """The thread hop under each loop: the p50 of each of ``repeat`` fresh loops.

    Several loops because the hop is bimodal: ~10 us while both threads stay on
    warm cores, ~100 us when the OS has to wake an idle core for one of them.
    """
    import uvloop

    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop,
    }
    lines = []
    for name, factory in factories.items():
        medians = []
        for _ in range(repeat):
            with asyncio.Runner(loop_factory=factory) as runner:
                medians.append(runner.run(_hop(rounds)) * 1e6)
        shown = " / ".join(f"{m:.0f}" for m in medians)
        lines.append(
            f"loop -> thread -> loop hop p50 per run, {name}: {shown} us "
            "(SimpleQueue + call_soon_threadsafe, the pipeline hop's mechanism)"
        )
    return lines


def _per_call(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=3)) / number


def json_dumps_bench() -> list[str]:
    """``web.json_response`` with the default ``json.dumps`` vs ``orjson``."""
    import orjson
    from aiohttp import web

    from actors.plugins.imagefx import ImageFxParams

    session = {
        "id": "s_3f2a9c1e0b7d4e8a",
        "pipeline": "imagefx",
        "drain": "latest",
        "params": {"effect": "invert", "strength": 0.8},
        "attached": True,
        "created_at": 1763772000.123,
        "token": "t" * 43,
        "ws_url": "ws://127.0.0.1:8080/api/v1/sessions/s_3f2a9c1e0b7d4e8a/ws",
        "stats": {
            "frames_in": 1234,
            "frames_out": 1200,
            "superseded": 30,
            "errors": 4,
            "last_total_ms": 12.5,
        },
    }
    pipeline = {
        "name": "imagefx",
        "kind": "imagefx",
        "replicas": 1,
        "max_batch": 8,
        "options": {},
        "generation": 3,
        "ready": True,
        "params_schema": ImageFxParams.model_json_schema(),
    }
    listing = {"items": [session] * 20, "total": 20}

    def fast(obj: Any) -> str:
        return orjson.dumps(obj).decode()

    lines = []
    for name, body in (("session", session), ("pipeline", pipeline), ("20 sessions", listing)):
        n = 20000
        std = _per_call(functools.partial(web.json_response, body), n)
        orj = _per_call(functools.partial(web.json_response, body, dumps=fast), n)
        lines.append(
            f"json_response({name}, {len(json.dumps(body))} B): json {std * 1e6:.1f} us, "
            f"orjson {orj * 1e6:.1f} us, orjson {std / orj:.2f}x faster"
        )
    return lines


async def loops(plan: Plan, done: dict[str, Outcome]) -> Outcome:
    out = Outcome("f. uvloop vs asyncio (server loop), orjson vs json")
    missing = [name for name in ("uvloop", "orjson") if importlib.util.find_spec(name) is None]
    if missing:
        out.notes.append(f"skipped: {', '.join(missing)} not installed (neither is declared yet)")
        return out
    base_a = done.get("a") or await throughput(plan)
    base_b = done.get("b") or await ping_pong(plan)
    uv_a, uv_b = await throughput(plan, "uvloop"), await ping_pong(plan, "uvloop")
    out.rows = [
        base_a.rows[0],
        uv_a.rows[0],
        base_a.rows[2],
        uv_a.rows[2],
        base_b.rows[0],
        uv_b.rows[0],
        base_b.rows[1],
        uv_b.rows[1],
    ]
    for what, a, b in (
        ("a easel", base_a.rows[0], uv_a.rows[0]),
        ("a echo", base_a.rows[2], uv_a.rows[2]),
    ):
        out.notes.append(f"{what}: uvloop/asyncio throughput {b.fps / a.fps:.2f}x")
    for what, a, b in (
        ("b easel", base_b.rows[0], uv_b.rows[0]),
        ("b echo", base_b.rows[1], uv_b.rows[1]),
    ):
        if a.p50_ms and b.p50_ms:
            out.notes.append(
                f"{what}: uvloop/asyncio p50 {b.p50_ms / a.p50_ms:.2f}x "
                f"({a.p50_ms:.3f} -> {b.p50_ms:.3f} ms)"
            )
    out.notes.extend(uv_a.notes + uv_b.notes)
    out.notes.extend(await asyncio.to_thread(hop_bench))
    out.notes.extend(json_dumps_bench())
    return out


SCENARIOS: dict[str, Callable[[Plan], Awaitable[Outcome]]] = {
    "a": throughput,
    "b": ping_pong,
    "c": many_sessions,
    "d": overload,
    "e": batching,
}


async def main_async(plan: Plan, only: list[str]) -> dict[str, Outcome]:
    done: dict[str, Outcome] = {}
    for key in only:
        outcome = await (loops(plan, done) if key == "f" else SCENARIOS[key](plan))
        outcome.print()
        done[key] = outcome
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench.realtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short runs (< 2 min in all)")
    parser.add_argument("--only", default="a,b,c,d,e,f", help="scenarios to run, e.g. a,b")
    parser.add_argument("--profile", type=Path, help="pyinstrument the Easel server of a and b")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    done = asyncio.run(main_async(Plan(args.quick, args.profile), args.only.split(",")))
    if args.json is not None:
        report = {
            k: {"name": o.name, "rows": [r.as_dict() for r in o.rows], "notes": o.notes}
            for k, o in done.items()
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
