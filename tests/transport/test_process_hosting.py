"""A native crash in a process-hosted replica, seen from a real ``easel serve``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import EASEL, ROOT, free_port, png, wait_until_serving
from transport.client import Client, Result, ServerError
from transport.protocol import ContentType


def children(pid: int) -> set[int]:
    """The replica processes ``pid`` started (not multiprocessing's helpers)."""
    found: set[int] = set()
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in listing.read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    found.add(int(child))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


async def connect(http: aiohttp.ClientSession, url: str, pipeline: str) -> Client:
    async with http.post(url + "/api/v1/sessions", json={"pipeline": pipeline}) as response:
        created = await response.json()
    return await Client.connect(url, token=created["token"], session=created["id"], http=http)


async def steady(client: Client, stop: asyncio.Event) -> list[Result | ServerError]:
    """One frame at a time until ``stop``; every answer."""
    answers: list[Result | ServerError] = []
    seq = 0
    image = png()
    while not stop.is_set():
        await client.send_frame(seq, ContentType.PNG, image)
        async for answer in client.results():
            answers.append(answer)
            break
        seq += 1
    return answers


def test_a_segfaulting_child_fails_one_frame_and_nobody_else_notices(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine = subprocess.Popen(
        [*EASEL, "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        env={**os.environ, "PYTHONPATH": str(ROOT), "EASEL_LOG_LEVEL": "CRITICAL"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_until_serving(url + "/api/v1/health", engine)
        admin_key = (tmp_path / "d" / "admin.key").read_text().strip()  # the first start's
        replacement = asyncio.run(crash_one(url, engine, admin_key))
        engine.send_signal(signal.SIGKILL)  # no chance to clean up
        engine.wait(timeout=10)
        until(lambda: not alive(replacement))  # its child did not outlive it
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


async def crash_one(url: str, engine: subprocess.Popen[bytes], admin_key: str) -> int:
    """Segfault the child of one session's pipeline while another session streams;
    returns the pid of the child that replaced it."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for body in (
            {"name": "native", "kind": "simulated", "hosting": "process",
             "options": {"cost_ms": 5, "crash_native": "segv"}},
            {"name": "calm", "kind": "simulated", "options": {"cost_ms": 5}},
        ):  # fmt: skip
            async with http.post(url + "/api/v1/pipelines", json=body) as response:
                assert response.status == 201, await response.text()
        async with http.get(url + "/api/v1/pipelines/native") as response:
            assert (await response.json())["hosting"] == "process"
        (child,) = children(engine.pid)
        victim = await connect(http, url, "native")
        bystander = await connect(http, url, "calm")
        stop = asyncio.Event()
        watching = asyncio.create_task(steady(bystander, stop))
        await victim.send_frame(0, ContentType.PNG, png(), params={"crash": True})
        async for answer in victim.results():
            assert isinstance(answer, ServerError)
            assert (answer.code, answer.seq) == ("pipeline_error", 0)
            break
        events = [(await victim.next_event()).name for _ in range(2)]
        assert events == ["pipeline.restarting", "pipeline.ready"]
        await victim.send_frame(1, ContentType.PNG, png())
        async for answer in victim.results():
            assert isinstance(answer, Result)
            assert answer.seq == 1
            break
        stop.set()
        seen = await watching
        assert seen
        assert all(isinstance(answer, Result) for answer in seen)
        assert engine.poll() is None  # the engine, same pid, lives on
        assert not alive(child)
        (replacement,) = children(engine.pid)
        assert replacement != child
        await victim.close()
        await bystander.close()
        return replacement
