"""Engines as real processes: SIGKILLed mid-queue and restarted, and two engine nodes
sharing one throwaway PostgreSQL while one of them is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ops.bench.servers import free_port
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import ENDED, FAST, JOBS, SERVERS, empty_graph, eventually
from tests.support import PgCluster, running_pg_cluster
from tests.support.fakecomfy import successes

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """``easel serve`` in a process of its own."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        settings = {f"EASEL_{k.upper()}": str(v) for k, v in FAST.items()}
        self.env = {
            **os.environ,
            **settings,
            "EASEL_EVENT_LOOP": "asyncio",
            "EASEL_INSECURE": "true",  # loopback only; these tests are about the queue
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        command = [sys.executable, "-m", "transport.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--data-dir", str(self.data_dir), "--log-level", "WARNING"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.launch()

        async def serving() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, "easel serve exited"
            try:
                async with http.get(self.url + "/api/v1/health") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(serving, f"{self.url} serving", 60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def all_ended(http: aiohttp.ClientSession, url: str, count: int) -> list[dict[str, Any]]:
    """Every job, once all ``count`` have ended (bounded)."""

    async def check() -> list[dict[str, Any]] | None:
        jobs: list[dict[str, Any]] = []
        while len(jobs) < count:
            page = await call(http, "GET", f"{url}{JOBS}?limit=500&offset={len(jobs)}")
            jobs.extend(page["items"])
            if not page["items"]:
                break
        return jobs if all(job["status"] in ENDED for job in jobs) else None

    found: list[dict[str, Any]] = await eventually(check, "every job ended", 90)
    return found


def exactly_once(jobs: list[dict[str, Any]], count: int) -> None:
    assert len(jobs) == count
    assert [job["status"] for job in jobs] == ["succeeded"] * count, {job["status"] for job in jobs}
    outputs = [output["media_id"] for job in jobs for output in job["outputs"]]
    assert len(set(outputs)) == len(outputs) == count


async def register(http: aiohttp.ClientSession, url: str, fakes: list[FakeComfy]) -> None:
    for index, fake in enumerate(fakes):
        body = {"name": f"f{index}", "url": fake.url, "max_in_flight": 2}
        await call(http, "POST", url + SERVERS, body)


async def all_idle(http: aiohttp.ClientSession, url: str, count: int) -> None:
    async def check() -> bool:
        servers = await call(http, "GET", url + SERVERS)
        states = [server["state"] for server in servers["items"]]
        return states == ["idle"] * count

    await eventually(check, f"{count} servers idle on {url}", 30)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def test_an_engine_sigkilled_mid_queue_loses_nothing_after_restart(
    tmp_path: Path, three_fakes: list[FakeComfy], http: aiohttp.ClientSession
) -> None:
    node = Node(tmp_path / "data")
    try:
        await node.start(http)
        await register(http, node.url, three_fakes)
        await all_idle(http, node.url, 3)
        for fake in three_fakes:
            fake.slow(0.02, steps=3)
        for color in range(40):
            await call(http, "POST", node.url + JOBS, {"workflow": empty_graph(color=color)})

        async def half_way() -> bool:
            page = await call(http, "GET", f"{node.url}{JOBS}?status=succeeded&limit=1")
            return bool(page["total"] >= 5)

        await eventually(half_way, "some jobs done")
        node.kill()
        await node.start(http)
        exactly_once(await all_ended(http, node.url, 40), 40)
        assert sum([await successes(fake) for fake in three_fakes]) == 40
    finally:
        node.stop()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    with running_pg_cluster() as cluster:
        yield cluster


async def test_two_engines_on_one_postgresql_share_the_queue_through_a_sigkill(
    tmp_path: Path,
    three_fakes: list[FakeComfy],
    http: aiohttp.ClientSession,
    pg_cluster: PgCluster,
) -> None:
    database = await pg_cluster.create_database()
    shared = {"EASEL_DATABASE_URL": database, "EASEL_DB_AUTO_MIGRATE": "true"}
    a = Node(tmp_path / "a", EASEL_NODE_ID="a", **shared)
    b = Node(tmp_path / "b", EASEL_NODE_ID="b", **shared)
    most = dict.fromkeys(range(3), 0)

    async def watch_caps() -> None:
        while True:
            for index, fake in enumerate(three_fakes):
                most[index] = max(most[index], fake.describe()["queue_remaining"])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_caps())
    try:
        await a.start(http)
        await b.start(http)
        await register(http, a.url, three_fakes)
        await all_idle(http, a.url, 3)
        await all_idle(http, b.url, 3)  # b learned of them from the database
        for fake in three_fakes:
            fake.slow(0.002, steps=2)
        for color in range(200):
            url = (a if color % 2 else b).url
            await call(http, "POST", url + JOBS, {"workflow": empty_graph(color=color)})

        async def running_nodes() -> set[str]:
            running = await call(http, "GET", f"{b.url}{JOBS}?status=running&limit=500")
            return {job["node"] for job in running["items"]}

        await eventually(running_nodes, "a job runs")
        for fake in three_fakes:  # what runs now stays running: its node dies holding it
            fake.hang()
        await asyncio.sleep(0.5)  # jobs past their first node finish; new ones stop
        # each fake now holds one hung prompt, sent by a or b: kill a node that holds one
        holders = await eventually(running_nodes, "a node drives a running job that can't end")
        victim, survivor = (a, b) if "a" in holders else (b, a)
        victim.kill()
        for fake in three_fakes:
            fake.hang(False)
        exactly_once(await all_ended(http, survivor.url, 200), 200)
        assert sum([await successes(fake) for fake in three_fakes]) == 200
        assert max(most.values()) <= 2, most  # the cap of 2 held across both nodes
        async with http.get(survivor.url + "/metrics") as response:
            metrics = await response.text()
        [taken] = [
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("easel_job_lease_takeovers_total ")
        ]
        assert taken >= 1  # the survivor took the victim's jobs over
    finally:
        watcher.cancel()
        a.stop()
        b.stop()
