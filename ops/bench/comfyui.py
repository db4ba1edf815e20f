"""ComfyUI fleet: what the durable job path costs, how fast it goes, how fast it heals.

Run from the repository root::

    .venv/bin/python -m ops.bench.comfyui [--jobs 50] [--burst 300] [--failovers 5]

Everything runs in this process on one event loop: Easel (embedded SQLite, engine
defaults but ``pipelines=passthrough``) and fake ComfyUI servers (``ops.fakecomfy``)
running a trivial workflow (EmptyImage 8x8 → SaveImage). Three measurements, each
against a baseline in the same run:

1. **Dispatch overhead**: one job at a time, ``--jobs`` times. Baseline: a client
   submits straight to the fake, waits for the prompt's last WebSocket frame, reads
   the history and fetches the output (what Easel does per job). Easel: ``POST
   /api/v1/jobs`` and read its Server-Sent Events until it succeeded (the output is
   stored as media). Prints the median per job of each, the difference and the ratio.
2. **Throughput** across 10 fakes (``max_in_flight`` 2 each): ``--burst`` jobs at
   once through Easel vs the same prompts submitted straight round-robin.
3. **Failover**: three fakes, a job whose nodes take 0.2 s each; once it runs, its
   server dies. The time from the death to the job running on another server
   (``--failovers`` times; engine defaults: 2 s health and reconcile intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from actors.comfyui.client import ComfyClient, ComfyEvent, outputs_of
from ops.bench.servers import in_process
from ops.fakecomfy import FakeComfy, FakeConfig, running_fake

SETTINGS = {"pipelines": "passthrough"}


def graph(index: int) -> dict[str, Any]:
    """A trivial workflow; ``index`` makes each one distinct (no cache hits)."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index % 0xFFFFFF},
        },
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b"}},
    }


@asynccontextmanager
async def fakes(count: int, base: Path) -> AsyncIterator[list[FakeComfy]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(running_fake(FakeConfig(base_dir=base / f"f{i}")))
            for i in range(count)
        ]


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as response:
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {await response.text()}")
        return await response.json()


async def register(http: aiohttp.ClientSession, url: str, servers: list[FakeComfy]) -> None:
    for index, fake in enumerate(servers):
        body = {"name": f"f{index}", "url": fake.url, "max_in_flight": 2}
        await call(http, "POST", url + "/api/v1/comfyui/servers", body)
    await all_idle(http, url)


async def all_idle(http: aiohttp.ClientSession, url: str) -> None:
    while True:
        listing = await call(http, "GET", url + "/api/v1/comfyui/servers")
        if all(server["state"] == "idle" for server in listing["items"]):
            return
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[Any]], every: float) -> Any:
    """Poll ``check`` every ``every`` seconds until it answers something truthy."""
    while True:
        if answer := await check():
            return answer
        await asyncio.sleep(every)


async def running(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    job: dict[str, Any] = await call(http, "GET", url)
    return job if job["status"] == "running" else None


async def succeeded(http: aiohttp.ClientSession, url: str) -> bool:
    return bool((await call(http, "GET", url))["status"] == "succeeded")


# --- 1. overhead ----------------------------------------------------------------------


async def direct_job(client: ComfyClient, stream: Any, index: int) -> None:
    prompt_id = await client.submit(graph(index), client_id=stream.client_id)
    async for item in stream:
        done = (
            isinstance(item, ComfyEvent)
            and item.type == "executing"
            and item.data.get("node") is None
            and item.prompt_id == prompt_id
        )
        if done:
            break
    entry = await client.history(prompt_id)
    assert entry is not None
    for _, output in outputs_of(entry):
        await client.view(output)


async def easel_job(http: aiohttp.ClientSession, url: str, index: int) -> None:
    job = await call(http, "POST", url + "/api/v1/jobs", {"workflow": graph(index)})
    async with http.get(f"{url}/api/v1/jobs/{job['id']}/events") as response:
        async for raw in response.content:
            line = raw.decode()
            if line.startswith("data: "):
                status = json.loads(line[6:])["status"]
                if status != "succeeded" and status in ("failed", "cancelled"):
                    raise RuntimeError(f"job {job['id']} {status}")
    final = await call(http, "GET", f"{url}/api/v1/jobs/{job['id']}")
    assert final["status"] == "succeeded", final


async def overhead(jobs: int, base: Path) -> None:
    async with (
        fakes(1, base / "overhead") as [fake],
        in_process("easel", SETTINGS) as easel,
        aiohttp.ClientSession() as http,
    ):
        await register(http, easel.url, [fake])
        client = ComfyClient(fake.url)
        direct: list[float] = []
        through: list[float] = []
        try:
            async with client.events("bench") as stream:
                for index in range(jobs):  # alternate, so both see the same machine
                    start = time.perf_counter()
                    await direct_job(client, stream, index)
                    direct.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    await easel_job(http, easel.url, 100_000 + index)
                    through.append(time.perf_counter() - start)
        finally:
            await client.close()
    d, e = statistics.median(direct), statistics.median(through)
    print(f"1. dispatch overhead, {jobs} sequential jobs (median per job)")
    print(f"   straight to the fake   {d * 1000:8.1f} ms")
    print(f"   through Easel          {e * 1000:8.1f} ms")
    print(f"   overhead               {(e - d) * 1000:8.1f} ms per job   ratio {e / d:.2f}x")


# --- 2. throughput --------------------------------------------------------------------


async def direct_burst(servers: list[FakeComfy], burst: int) -> float:
    clients = [ComfyClient(fake.url) for fake in servers]
    try:
        start = time.perf_counter()
        ids = await asyncio.gather(
            *(clients[i % len(clients)].submit(graph(200_000 + i)) for i in range(burst))
        )
        for index, prompt_id in enumerate(ids):
            client = clients[index % len(clients)]
            await until(functools.partial(client.history, prompt_id), 0.01)
        return burst / (time.perf_counter() - start)
    finally:
        for client in clients:
            await client.close()


async def easel_burst(http: aiohttp.ClientSession, url: str, burst: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(
        *(
            call(http, "POST", url + "/api/v1/jobs", {"workflow": graph(300_000 + i)})
            for i in range(burst)
        )
    )
    while True:
        page = await call(http, "GET", url + "/api/v1/jobs?status=succeeded&limit=1")
        if page["total"] >= burst:
            return burst / (time.perf_counter() - start)
        await asyncio.sleep(0.02)


async def throughput(burst: int, base: Path) -> None:
    async with (
        fakes(10, base / "burst") as servers,
        in_process("easel", SETTINGS) as easel,
        aiohttp.ClientSession() as http,
    ):
        await register(http, easel.url, servers)
        direct = await direct_burst(servers, burst)
        through = await easel_burst(http, easel.url, burst)
    print(f"2. throughput, {burst} jobs at once across 10 fakes (max_in_flight 2)")
    print(f"   straight to the fakes  {direct:8.1f} jobs/s")
    print(f"   through Easel          {through:8.1f} jobs/s   ratio {through / direct:.2f}")


# --- 3. failover ----------------------------------------------------------------------


async def failover(runs: int, base: Path) -> None:
    times: list[float] = []
    async with (
        fakes(3, base / "failover") as servers,
        in_process("easel", SETTINGS) as easel,
        aiohttp.ClientSession() as http,
    ):
        await register(http, easel.url, servers)
        listing = await call(http, "GET", easel.url + "/api/v1/comfyui/servers")
        ids = {server["name"]: server["id"] for server in listing["items"]}
        by_id = {ids[f"f{i}"]: fake for i, fake in enumerate(servers)}
        for fake in servers:
            fake.slow(0.05, steps=4)
        for run in range(runs):
            job = await call(http, "POST", easel.url + "/api/v1/jobs", {"workflow": graph(run)})
            url = f"{easel.url}/api/v1/jobs/{job['id']}"
            found = await until(functools.partial(running, http, url), 0.005)
            victim = by_id[found["server_id"]]
            died = time.perf_counter()
            victim.die()
            while True:
                now = await call(http, "GET", url)
                if now["status"] == "running" and now["server_id"] != found["server_id"]:
                    times.append(time.perf_counter() - died)
                    break
                await asyncio.sleep(0.005)
            await until(functools.partial(succeeded, http, url), 0.01)
            await victim.restart()
            await all_idle(http, easel.url)
    print(f"3. failover, {runs} runs: a server dies mid-job → the job runs on another")
    print(
        f"   median {statistics.median(times) * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="easel-bench-comfyui-") as tmp:
        base = Path(tmp)
        await overhead(args.jobs, base)
        await throughput(args.burst, base)
        await failover(args.failovers, base)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="sequential jobs (overhead)")
    parser.add_argument("--burst", type=int, default=300, help="jobs at once (throughput)")
    parser.add_argument("--failovers", type=int, default=5, help="server deaths (failover)")
    asyncio.run(main(parser.parse_args()))
