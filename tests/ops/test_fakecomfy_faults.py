"""Each failure mode: die (mid-job, and restart), hang, slow, dropped sockets,
rejected requests, refused connections; the /_fake control routes; the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.ops.conftest import (
    blur_graph,
    events_until_done,
    frame,
    get_json,
    history_entry,
    invert_graph,
    png,
    submit,
    types,
    upload,
    wait_for,
)
from transport.bench.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER_500 = "500 Internal Server Error\n\nServer got itself in trouble"


async def closed_abruptly(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read until the socket ends; it must end without a close frame (1006)."""
    while True:
        kind, data = await frame(ws)
        if kind == "closed":
            assert data == 1006
            return


async def refused(url: str) -> None:
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectorError):
            await fresh.get(url + "/system_stats")


async def back(url: str) -> None:
    """Wait until the server answers again (bounded)."""
    async with aiohttp.ClientSession() as fresh:
        for _ in range(300):
            try:
                async with fresh.get(url + "/system_stats") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.02)
    raise AssertionError("the fake never came back")


async def test_dying_mid_job_loses_everything_but_files(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    await upload(http, fake.url, png())
    first = await submit(http, fake.url, invert_graph())
    await history_entry(http, fake.url, first)
    ws = await http.ws_connect(fake.ws_url + "?clientId=victim")
    await frame(ws)
    fake.hang()  # holds the first node until both prompts are in
    doomed = await submit(http, fake.url, blur_graph(), client_id="victim")
    await wait_for(ws, "executing", node="1")
    pending = await submit(http, fake.url, invert_graph(prefix="peer/pending"))
    fake.die_at_node(1)  # the next node to start, 101
    fake.hang(False)
    await wait_for(ws, "executing", node="101")
    await closed_abruptly(ws)
    await refused(fake.url)
    assert not fake.alive
    await fake.restart()
    async with aiohttp.ClientSession() as fresh:
        assert await get_json(fresh, fake.url + "/history") == {}
        for prompt_id in (first, doomed, pending):
            assert await get_json(fresh, f"{fake.url}/history/{prompt_id}") == {}
        empty: dict[str, list[str]] = {"queue_running": [], "queue_pending": []}
        assert await get_json(fresh, fake.url + "/queue") == empty
        async with fresh.get(f"{fake.url}/api/jobs/{doomed}") as response:
            assert response.status == 404
        image = {"filename": "invert_00001_.png", "subfolder": "peer", "type": "output"}
        async with fresh.get(fake.url + "/view", params=image) as response:
            assert response.status == 200
        again = await submit(fresh, fake.url, invert_graph())
        entry = await history_entry(fresh, fake.url, again)
        assert entry["outputs"]["3"]["images"][0]["filename"] == "invert_00002_.png"


async def test_die_and_come_back_through_the_control_route(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    fake.hang()
    running = await submit(http, fake.url, blur_graph())
    async with http.post(fake.url + "/_fake/die", json={"restart_after": 0.1}) as response:
        assert await response.json() == {"dying": True, "restart_after": 0.1}
    await back(fake.url)
    async with aiohttp.ClientSession() as fresh:
        state = await get_json(fresh, fake.url + "/_fake/state")
        assert (state["alive"], state["lifetimes"], state["queue_remaining"]) == (True, 2, 0)
        assert await get_json(fresh, f"{fake.url}/history/{running}") == {}


async def test_a_hung_fake_accepts_but_never_finishes(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(fake.ws_url + "?clientId=h")
    await frame(ws)
    fake.hang()
    stuck = await submit(http, fake.url, invert_graph("example.png"), client_id="h")
    await wait_for(ws, "executing", node="1")
    queued = await submit(http, fake.url, invert_graph("example.png", prefix="q"), client_id="h")
    assert await get_json(http, fake.url + "/prompt") == {"exec_info": {"queue_remaining": 2}}
    assert await get_json(http, f"{fake.url}/history/{stuck}") == {}
    assert (await get_json(http, fake.url + "/_fake/state"))["faults"]["hang"] is True
    fake.hang(False)
    assert "execution_success" in types(await events_until_done(ws, stuck))
    assert "execution_success" in types(await events_until_done(ws, queued))
    await ws.close()


async def test_a_slow_fake_reports_progress_per_step(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(fake.ws_url + "?clientId=s")
    await frame(ws)
    slow = {"step_delay": 0.01, "slow_steps": 3}
    async with http.post(fake.url + "/_fake/faults", json=slow) as response:
        assert (await response.json())["step_delay"] == 0.01
    prompt_id = await submit(http, fake.url, invert_graph("example.png"), client_id="s")
    events = await events_until_done(ws, prompt_id)
    progress = [(d["node"], d["value"], d["max"]) for k, d in events if k == "progress"]
    assert progress == [(n, v, 3) for n in ("1", "2", "3") for v in (1, 2, 3)]
    running = [d["nodes"]["2"] for k, d in events if k == "progress_state" and "2" in d["nodes"]]
    assert [(s["value"], s["state"]) for s in running[:4]] == [
        (0.0, "running"),
        (1, "running"),
        (2, "running"),
        (3, "running"),
    ]
    await ws.close()


async def test_dropped_sockets(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(fake.ws_url + "?clientId=d")
    await frame(ws)
    await fake.drop_websockets()
    await closed_abruptly(ws)
    ws = await http.ws_connect(fake.ws_url + "?clientId=d")
    await frame(ws)
    async with http.post(fake.url + "/_fake/drop_ws", json={"code": 1001}) as response:
        assert response.status == 200
    assert await frame(ws) == ("closed", 1001)
    # Mid-job: the socket goes, the job goes on; a new socket sees the rest.
    ws = await http.ws_connect(fake.ws_url + "?clientId=d")
    await frame(ws)
    fake.slow(0.02, steps=2)
    fake.update_faults(drop_ws_at_node=2)
    prompt_id = await submit(http, fake.url, blur_graph(), client_id="d")
    await closed_abruptly(ws)
    ws = await http.ws_connect(fake.ws_url + "?clientId=d")
    await frame(ws)
    assert (await history_entry(http, fake.url, prompt_id))["status"]["status_str"] == "success"
    await ws.close()


async def test_rejecting_requests(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    fake.reject(503)
    async with http.get(fake.url + "/system_stats") as response:
        assert (response.status, await response.text()) == (503, "503: Service Unavailable")
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await http.ws_connect(fake.ws_url)
    assert handshake.value.status == 503
    assert (await get_json(http, fake.url + "/_fake/state"))["faults"]["reject_status"] == 503
    async with http.post(fake.url + "/_fake/reset") as response:
        assert (await response.json())["reject_status"] is None
    fake.reject(500, paths=("/prompt",), count=1)
    async with http.post(fake.url + "/api/prompt", json={"prompt": {}}) as response:
        assert response.status == 500
        assert response.content_type == "text/plain"
        assert await response.text() == SERVER_500
    assert await get_json(http, fake.url + "/queue") == {"queue_running": [], "queue_pending": []}
    await submit(http, fake.url, invert_graph("example.png"))  # the one rejection is spent
    async with http.post(fake.url + "/_fake/faults", json={"no_such_fault": 1}) as response:
        assert response.status == 400
    async with http.post(fake.url + "/_fake/faults", json={"hang": "yes"}) as response:
        assert response.status == 400


async def test_refusing_connections(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    await fake.refuse_connections()
    await refused(fake.url)
    await fake.accept_connections()
    await back(fake.url)
    async with http.post(fake.url + "/_fake/refuse", json={"seconds": 0.2}) as response:
        assert await response.json() == {"refusing_for": 0.2}
    await back(fake.url)
    assert (await get_json(http, fake.url + "/_fake/state"))["alive"] is True


async def test_restart_keeps_the_port_and_wipes_temp(tmp_path: Path) -> None:
    async with running_fake(FakeConfig(base_dir=tmp_path)) as fake:
        port = fake.port
        (fake.dirs.temp / "leftover.png").write_bytes(png())
        await fake.restart()
        assert fake.port == port
        assert list(fake.dirs.temp.iterdir()) == []
        assert (fake.dirs.input / "example.png").exists()


async def test_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "ops.fakecomfy",
        "--port",
        str(port),
        "--base-dir",
        str(tmp_path),
        "--model",
        "checkpoints=a.safetensors,b.safetensors",
        "--nodes",
        "LoadImage,SaveImage,CheckpointLoaderSimple",
        "--log-level",
        "WARNING",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.to_thread(
        subprocess.Popen,
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await back(url)
        async with aiohttp.ClientSession() as http:
            models = await get_json(http, url + "/models/checkpoints")
            assert models == ["a.safetensors", "b.safetensors"]
            nodes = await get_json(http, url + "/object_info")
            assert set(nodes) == {"LoadImage", "SaveImage", "CheckpointLoaderSimple"}
            async with http.post(url + "/_fake/die") as response:
                assert response.status == 200
        assert await asyncio.to_thread(process.wait, 20) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
