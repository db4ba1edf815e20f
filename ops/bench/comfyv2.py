"""Comfy API v2: what Easel's ``/api/v2`` costs against the reference proxy, and its rate.

Run from the repository root::

    .venv/bin/python -m ops.bench.comfyv2 [--jobs 50] [--burst 300] [--wait events|poll]
                                          [--proxy-burst 50] [--json FILE]

The fake ComfyUI servers (``ops.fakecomfy``, a trivial EmptyImage 8x8 → SaveImage
workflow) run on this process's loop, the clients on a loop of their own in a thread;
the two fronts run as subprocesses: Easel (``easel serve``, embedded SQLite,
``--insecure`` on loopback, the fakes registered with ``max_in_flight`` 2) and
``comfy-api-proxy`` 0.1.6 (in-memory state, no token), which fronts exactly one
ComfyUI. Both are driven by the same client code: comfy-sdk's ``AsyncComfy``
``submit`` then, with ``--wait events`` (the default), the job's SSE stream to its
terminal event and ``wait()``; with ``--wait poll``, ``wait()`` alone, whose poll
backoff starts at 0.5 s and so hides what the front costs. Two measurements, each
against a baseline in the same run:

1. **Overhead**: ``--jobs`` sequential jobs, taking turns on one shared fake: straight
   to the fake (``POST /prompt``, then ``GET /history`` every 2 ms until it holds the
   prompt), through the proxy, through Easel. p50, p95 and mean of submit → result
   per target, each front's overhead (its latency minus the baseline's) and the
   ratios Easel/proxy.
2. **Throughput**: ``--burst`` jobs via the SDK, 64 in flight at a time, all waited for:
   Easel across 10 fakes vs the same prompts straight to the 10 fakes round-robin;
   the proxy in front of one fake vs straight to that fake, ``--proxy-burst`` jobs
   (default 50: the proxy serves 8 event streams at once, answers the rest 429, and
   300 at once take it minutes).

An Easel without ``/api/v2`` (the 404 of ``GET /api/v2/jobs``) leaves its rows out
and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from comfy_sdk import BASE_URL_ENV_VAR, AsyncComfy, ComfyError

from actors.comfyui.client import ComfyClient
from ops.bench.comfyui import SETTINGS, direct_burst, fakes, graph, register, until
from ops.bench.servers import free_port, running, spawned
from ops.fakecomfy import FakeComfy

__all__ = ["Ended", "Latency", "main", "proxy", "sdk", "v2_available"]

T = TypeVar("T")
WAITS = ("events", "poll")
WARMUP = 2
"""Unmeasured jobs per target first: the first one opens connections (~100 ms)."""


@dataclass(frozen=True, slots=True)
class Ended:
    """How one job ended, and how long its submit took (s)."""

    status: str
    submitted: float


@dataclass(frozen=True, slots=True)
class Latency:
    """Submit → result of one target's sequential jobs, in ms."""

    label: str
    jobs: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    submit_p50_ms: float
    """Median time until the submit was answered (``POST /api/v2/jobs`` or ``/prompt``)."""
    unsucceeded: dict[str, int]
    """Jobs that ended otherwise than ``succeeded``, by final status (timed all the same)."""

    @classmethod
    def of(cls, label: str, seconds: list[float], ends: list[Ended]) -> Latency:
        ms = [s * 1000.0 for s in seconds]
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
        submit = statistics.median(end.submitted * 1000.0 for end in ends)
        others = Counter(end.status for end in ends if end.status != "succeeded")
        mean = statistics.fmean(ms)
        return cls(label, len(ms), statistics.median(ms), p95, mean, submit, dict(others))


# --- the fronts -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def proxy(comfyui: str) -> AsyncIterator[str]:
    """Run ``comfy-api-proxy`` in front of ``comfyui`` on a free port; yield its URL.

    Loop only. In-memory state, no token, loopback. Raises ``RuntimeError`` if it
    does not serve within 30 s.
    """
    port = free_port()
    command = [sys.executable, "-m", "comfy_api_proxy.cli", "--comfyui", comfyui]
    proc = await asyncio.create_subprocess_exec(
        *command, "--port", str(port), stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    async with running(proc, url + "/api/v2/jobs"):
        yield url


@contextlib.asynccontextmanager
async def easel(servers: list[FakeComfy]) -> AsyncIterator[str]:
    """Run ``easel serve`` (``--insecure``, loopback) with ``servers`` registered; yield its URL."""
    async with spawned("easel", SETTINGS) as target, aiohttp.ClientSession() as http:
        await register(http, target.url, servers)
        yield target.url


async def v2_available(url: str) -> bool:
    """Whether the server at ``url`` answers ``GET /api/v2/jobs``. Loop only."""
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v2/jobs") as response:
        return response.status == 200


@contextlib.asynccontextmanager
async def sdk(url: str, api_key: str | None = None) -> AsyncIterator[AsyncComfy]:
    """comfy-sdk's async client aimed at ``url`` (it takes its target from the environment)."""
    previous = os.environ.get(BASE_URL_ENV_VAR)
    os.environ[BASE_URL_ENV_VAR] = url
    try:
        client = AsyncComfy(api_key=api_key, timeout=60.0)
    finally:
        if previous is None:
            del os.environ[BASE_URL_ENV_VAR]
        else:
            os.environ[BASE_URL_ENV_VAR] = previous
    try:
        yield client
    finally:
        await client.aclose()


# --- one job --------------------------------------------------------------------------


async def own_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run the client side on a loop of its own, in a thread. Loop only.

    On the fakes' loop, 300 SDK jobs at once starved them: Easel's submits to the fakes
    timed out and a connection of the client sent nothing for 10 s.
    """
    return await asyncio.to_thread(asyncio.run, work)


async def sdk_job(client: AsyncComfy, index: int, wait: str) -> Ended:
    """Submit ``graph(index)``, wait for its end the way ``wait`` says; its final status.

    ``wait()`` rather than ``result()``: the proxy can call a job that finished while it
    looked ``expired`` (it reads ``/history``, then ``/queue``, and a job finishing
    between the two is in neither); such ends are counted, not raised.
    """
    start = time.perf_counter()
    job = await client.submit(client.workflows.from_json(graph(index)))
    submitted = time.perf_counter() - start
    if wait == "events":
        # a front out of event streams answers 429: result() below polls instead
        with contextlib.suppress(ComfyError):
            async for _ in job.events():
                pass
    await job.wait()
    return Ended(job.status, submitted)


async def direct_job(client: ComfyClient, index: int) -> Ended:
    start = time.perf_counter()
    prompt_id = await client.submit(graph(index))
    submitted = time.perf_counter() - start
    entry = await until(functools.partial(client.history, prompt_id), 0.002)
    ok = entry["status"]["status_str"] == "success"
    return Ended("succeeded" if ok else "failed", submitted)


# --- 1. overhead ----------------------------------------------------------------------


async def overhead(jobs: int, wait: str, base: Path) -> dict[str, Any]:
    async with (
        fakes(1, base / "overhead") as [fake],
        proxy(fake.url) as proxy_url,
        easel([fake]) as easel_url,
    ):
        return await own_loop(sequential(fake.url, proxy_url, easel_url, jobs, wait))


async def sequential(
    fake_url: str, proxy_url: str, easel_url: str, jobs: int, wait: str
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        direct = ComfyClient(fake_url)
        stack.push_async_callback(direct.close)
        targets: dict[str, Callable[[int], Awaitable[Ended]]] = {
            "direct": functools.partial(direct_job, direct),
            "proxy": functools.partial(
                sdk_job, await stack.enter_async_context(sdk(proxy_url)), wait=wait
            ),
        }
        if await v2_available(easel_url):
            client = await stack.enter_async_context(sdk(easel_url))
            targets["easel"] = functools.partial(sdk_job, client, wait=wait)
        times: dict[str, list[float]] = {label: [] for label in targets}
        ends: dict[str, list[Ended]] = {label: [] for label in targets}
        for index in range(-WARMUP, jobs):  # take turns, so all see the same machine
            for n, (label, run) in enumerate(targets.items()):
                start = time.perf_counter()
                end = await run(1_000_000 * n + index + WARMUP)
                if index >= 0:
                    times[label].append(time.perf_counter() - start)
                    ends[label].append(end)
    rows = {label: Latency.of(label, seconds, ends[label]) for label, seconds in times.items()}
    return summarize_overhead(rows)


def summarize_overhead(rows: dict[str, Latency]) -> dict[str, Any]:
    """Each front's overhead over the direct baseline, and Easel's ratios to the proxy."""
    base = rows["direct"]
    fronts = {
        label: {
            "p50_overhead_ms": row.p50_ms - base.p50_ms,
            "mean_overhead_ms": row.mean_ms - base.mean_ms,
        }
        for label, row in rows.items()
        if label != "direct"
    }
    ratios: dict[str, float] | None = None
    if "easel" in rows:
        e, p = rows["easel"], rows["proxy"]
        ratios = {
            "p50": e.p50_ms / p.p50_ms,
            "p95": e.p95_ms / p.p95_ms,
            "mean": e.mean_ms / p.mean_ms,
        }
        pe, pp = fronts["easel"]["p50_overhead_ms"], fronts["proxy"]["p50_overhead_ms"]
        ratios["p50_overhead"] = pe / pp if pp > 0 else float("nan")
    return {
        "rows": [asdict(row) for row in rows.values()],
        "overhead": fronts,
        "easel_over_proxy": ratios,
    }


def print_overhead(result: dict[str, Any], wait: str) -> None:
    jobs = result["rows"][0]["jobs"]
    print(f"1. submit → result, {jobs} sequential jobs on one fake (SDK waits by {wait})")
    head = f"{'target':<8} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'submit p50':>11}"
    print(f"   {head} {'overhead p50':>13}")
    for row in result["rows"]:
        extra = result["overhead"].get(row["label"], {}).get("p50_overhead_ms")
        cell = "-" if extra is None else f"{extra:+.1f} ms"
        others = f"   not succeeded: {row['unsucceeded']}" if row["unsucceeded"] else ""
        print(
            f"   {row['label']:<8} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} "
            f"{row['mean_ms']:8.1f} {row['submit_p50_ms']:11.1f} {cell:>13}{others}"
        )
    ratios = result["easel_over_proxy"]
    if ratios is None:
        print("   Easel: no /api/v2 on this checkout, left out")
    else:
        print("   Easel/proxy: " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


# --- 2. throughput --------------------------------------------------------------------


IN_FLIGHT = 64
"""Jobs one SDK client has in flight at most. httpx pools 100 connections; past them it
opens connections for queued requests that may then sit unused past Easel's 10 s header
timeout, and the next ``POST`` on one fails with ``ReadError`` (not retried)."""


async def sdk_burst(url: str, burst: int, first: int, wait: str) -> tuple[float, dict[str, int]]:
    """Jobs/s of ``burst`` jobs at once through the front at ``url``, and the unsucceeded."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> Ended:
        async with slots:
            return await sdk_job(client, index, wait)

    async with sdk(url) as client:
        start = time.perf_counter()
        ends = await asyncio.gather(*(one(first + i) for i in range(burst)))
        rate = burst / (time.perf_counter() - start)
    return rate, dict(Counter(end.status for end in ends if end.status != "succeeded"))


async def throughput(burst: int, proxy_burst: int, wait: str, base: Path) -> dict[str, Any]:
    rates: dict[str, float] = {}
    unsucceeded: dict[str, dict[str, int]] = {}
    async with fakes(10, base / "burst") as servers:
        rates["direct x10"] = await own_loop(direct_burst(servers, burst))
        async with easel(servers) as easel_url:
            if await v2_available(easel_url):
                rate, unsucceeded["easel x10"] = await own_loop(
                    sdk_burst(easel_url, burst, 3 << 20, wait)
                )
                rates["easel x10"] = rate
        rates["direct x1"] = await own_loop(direct_burst(servers[:1], proxy_burst))
        async with proxy(servers[0].url) as proxy_url:
            rates["proxy x1"], unsucceeded["proxy x1"] = await own_loop(
                sdk_burst(proxy_url, proxy_burst, 4 << 20, wait)
            )
    ratios = {"proxy x1 / direct x1": rates["proxy x1"] / rates["direct x1"]}
    if "easel x10" in rates:
        ratios["easel x10 / direct x10"] = rates["easel x10"] / rates["direct x10"]
        ratios["easel x10 / proxy x1"] = rates["easel x10"] / rates["proxy x1"]
    return {
        "burst": burst,
        "proxy_burst": proxy_burst,
        "jobs_per_s": rates,
        "unsucceeded": unsucceeded,
        "ratios": ratios,
    }


def print_throughput(result: dict[str, Any]) -> None:
    print(
        f"2. throughput, {result['burst']} jobs via the SDK, {IN_FLIGHT} in flight (x1: "
        f"{result['proxy_burst']}; Easel's fakes: max_in_flight 2)"
    )
    for label, rate in result["jobs_per_s"].items():
        others = result["unsucceeded"].get(label)
        print(
            f"   {label:<12} {rate:8.1f} jobs/s" + (f"   not succeeded: {others}" if others else "")
        )
    if "easel x10" not in result["jobs_per_s"]:
        print("   Easel: no /api/v2 on this checkout, left out")
    print("   " + "  ".join(f"{k} {v:.2f}" for k, v in result["ratios"].items()))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both measurements, printed as they finish; the report as a dict."""
    with tempfile.TemporaryDirectory(prefix="easel-bench-comfyv2-") as tmp:
        report: dict[str, Any] = {"wait": args.wait}
        report["sequential"] = await overhead(args.jobs, args.wait, Path(tmp))
        print_overhead(report["sequential"], args.wait)
        report["throughput"] = await throughput(args.burst, args.proxy_burst, args.wait, Path(tmp))
        print_throughput(report["throughput"])
        return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="sequential jobs per target")
    parser.add_argument("--burst", type=int, default=300, help="jobs at once (throughput)")
    parser.add_argument(
        "--proxy-burst", type=int, default=50, help="jobs at once, proxy and its one fake"
    )
    parser.add_argument("--wait", choices=WAITS, default="events", help="how the SDK waits")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
