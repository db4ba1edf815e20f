"""REST latency on the embedded default: ``GET`` a stored project under concurrent clients.

Starts ``easel serve`` as its own process (SQLite in a temporary data dir), then 64
clients (``--clients``) hammer ``GET /api/v1/projects/{id}`` (a store read) and, as
the same-run baseline, ``GET /api/v1/health`` (the same HTTP stack, no store). Prints
requests/s and p50/p95/p99 for both and the ratios.

    python -m ops.bench.rest [--clients 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from ops.bench.servers import free_port


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(url + "/api/v1/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("easel serve did not become ready")


async def _load(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - began, latencies


def _serve(port: int, data: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "transport.cli", "serve", "--port", str(port)],
        env={**os.environ, "EASEL_DATA_DIR": data, "EASEL_LOG_LEVEL": "WARNING"},
        cwd=Path(__file__).resolve().parents[2],
    )


async def run(clients: int, seconds: float) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        server = _serve(port, data)
        try:
            await _wait_ready(base)
            async with aiohttp.ClientSession() as http:
                async with http.post(base + "/api/v1/projects", json={"name": "bench"}) as made:
                    project = (await made.json())["id"]
                for n in range(5):
                    await http.post(
                        base + f"/api/v1/projects/{project}/scenes", json={"name": f"s{n}"}
                    )
            rows = []
            for name, path in (
                ("health (baseline)", "/api/v1/health"),
                ("GET project (store)", f"/api/v1/projects/{project}"),
            ):
                elapsed, latencies = await _load(base + path, clients, seconds)
                rows.append((name, len(latencies) / elapsed, latencies))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(f"REST under {clients} concurrent clients, {seconds:.0f} s each (easel serve, SQLite)")
    print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for name, rate, latencies in rows:
        p50, p95, p99 = (_percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99))
        print(f"{name:<22}{rate:>10.0f}{p50:>10.2f}{p95:>10.2f}{p99:>10.2f}")
    base_rate, store_rate = rows[0][1], rows[1][1]
    base_p95 = _percentile(rows[0][2], 0.95)
    store_p95 = _percentile(rows[1][2], 0.95)
    print(
        f"ratio store/baseline: throughput {store_rate / base_rate:.2f}x, "
        f"p95 {store_p95 / base_p95:.2f}x; goal p95 < 20 ms: "
        f"{'met' if store_p95 < 0.020 else 'missed'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.seconds))


if __name__ == "__main__":
    main()
