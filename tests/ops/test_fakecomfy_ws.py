"""The WebSocket: the exact event sequence per client id, routing, the handshake,
binary previews, caching, runtime errors and interrupts."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import aiohttp
from PIL import Image

from ops.fakecomfy import FakeComfy
from tests.ops.conftest import (
    blur_graph,
    events_until_done,
    frame,
    get_json,
    history_entry,
    invert_graph,
    noise_png,
    png,
    submit,
    types,
    upload,
    wait_for,
)


async def connect(
    http: aiohttp.ClientSession, fake: FakeComfy, client: str | None = None
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    url = fake.ws_url if client is None else f"{fake.ws_url}?clientId={client}"
    ws = await http.ws_connect(url)
    kind, data = await frame(ws)
    assert kind == "status"
    assert set(data) == {"status", "sid"}
    return ws, data["sid"]


async def test_the_event_sequence_of_an_uncached_run(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    await upload(http, fake.url, noise_png())
    ws, sid = await connect(http, fake, "my-orchestrator-1")
    assert sid == "my-orchestrator-1"
    prompt_id = await submit(http, fake.url, invert_graph(), client_id=sid)
    events = await events_until_done(ws, prompt_id)
    assert types(events) == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        "progress_state",
        "executing",
        "progress_state",
        "progress_state",
        "executing",
        "progress_state",
        "progress_state",
        "executing",
        "executed",
        "progress_state",
        "execution_success",
        "status",
        "executing",
    ]
    data = [d for _, d in events]
    assert data[0] == data[1] == {"status": {"exec_info": {"queue_remaining": 1}}}
    assert data[2]["prompt_id"] == prompt_id
    assert isinstance(data[2]["timestamp"], int)
    assert (data[3]["nodes"], data[3]["prompt_id"]) == ([], prompt_id)
    running = data[4]["nodes"]["1"]
    assert running == {
        "value": 0.0,
        "max": 1.0,
        "state": "running",
        "node_id": "1",
        "prompt_id": prompt_id,
        "display_node_id": "1",
        "parent_node_id": None,
        "real_node_id": "1",
    }
    assert data[5] == {"node": "1", "display_node": "1", "prompt_id": prompt_id}
    assert data[6]["nodes"]["1"]["state"] == "finished"
    assert {k: v["state"] for k, v in data[7]["nodes"].items()} == {"1": "finished", "2": "running"}
    assert [data[i]["node"] for i in (5, 8, 11)] == ["1", "2", "3"]
    output = {"images": [{"filename": "invert_00001_.png", "subfolder": "peer", "type": "output"}]}
    assert data[12] == {"node": "3", "display_node": "3", "output": output, "prompt_id": prompt_id}
    assert all(v["state"] == "finished" for v in data[13]["nodes"].values())
    assert set(data[14]) == {"prompt_id", "timestamp"}
    assert data[15] == {"status": {"exec_info": {"queue_remaining": 0}}}
    assert data[16] == {"node": None, "prompt_id": prompt_id}
    await ws.close()


async def test_history_and_view_round_trip_an_inverted_image(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    source = noise_png()
    await upload(http, fake.url, source)
    prompt_id = await submit(
        http, fake.url, invert_graph(), extra_data={"extra_pnginfo": {"workflow": {"n": 1}}}
    )
    entry = await history_entry(http, fake.url, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["prompt"][:2] == [0, prompt_id]
    assert entry["prompt"][4] == ["3"]
    assert entry["meta"] == {
        "3": {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}
    }
    image = entry["outputs"]["3"]["images"][0]
    async with http.get(fake.url + "/view", params=image) as response:
        assert response.status == 200
        result = Image.open(io.BytesIO(await response.read()))
    original = Image.open(io.BytesIO(source)).convert("RGB")
    assert result.size == original.size
    off_by_one = 0
    for g, w in zip(result.convert("RGB").tobytes(), original.tobytes(), strict=True):
        assert 255 - w - 1 <= g <= 255 - w
        off_by_one += g != 255 - w
    assert off_by_one > 0  # float32 truncation, as a real server saves it
    assert json.loads(result.info["prompt"])["2"]["class_type"] == "ImageInvert"
    assert json.loads(result.info["workflow"]) == {"n": 1}


async def test_events_go_only_to_the_prompts_client(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    mine, _ = await connect(http, fake, "a")
    other, _ = await connect(http, fake, "b")
    prompt_id = await submit(http, fake.url, invert_graph("example.png"), client_id="a")
    await events_until_done(mine, prompt_id)
    seen = [await frame(other) for _ in range(3)]
    assert types(seen) == ["status", "status", "status"]
    # Without a client id, progress_state is broadcast but nothing else is.
    prompt_id = await submit(http, fake.url, invert_graph("example.png", prefix="x"))
    for ws in (mine, other):
        seen = await wait_for(ws, "status", status={"exec_info": {"queue_remaining": 0}})
        assert set(types(seen)) == {"status", "progress_state"}
        assert "progress_state" in types(seen)
    await mine.close()
    await other.close()


async def test_a_duplicate_client_id_takes_over(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    older, _ = await connect(http, fake, "dup")
    newer, _ = await connect(http, fake, "dup")
    prompt_id = await submit(http, fake.url, invert_graph("example.png"), client_id="dup")
    assert "execution_success" in types(await events_until_done(newer, prompt_id))
    received = None
    try:
        received = await older.receive(timeout=0.3)
    except TimeoutError:
        pass
    assert received is None
    await older.close()
    await newer.close()


async def test_a_generated_sid_and_reconnecting_mid_run(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws, sid = await connect(http, fake)
    assert len(sid) == 32
    fake.slow(0.05, steps=3)
    prompt_id = await submit(http, fake.url, blur_graph(), client_id=sid)
    await wait_for(ws, "executing", node="101")
    again, _ = await connect(http, fake, sid)
    kind, data = await frame(again)
    assert kind == "executing"
    assert set(data) == {"node"}  # no prompt_id, no display_node
    assert data["node"] in ("101", "102", "9")  # 101, unless this machine is very slow
    rest = await events_until_done(again, prompt_id)
    assert "execution_success" in types(rest)
    await ws.close()
    await again.close()


async def test_previews_in_the_legacy_and_metadata_layouts(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 6, "height": 4, "batch_size": 2, "color": 0xFF0000},
        },
        "21": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    legacy, _ = await connect(http, fake, "legacy")
    prompt_id = await submit(http, fake.url, graph, client_id="legacy")
    events = await events_until_done(legacy, prompt_id)
    interesting = [e for e in events if e[0] in ("progress", "binary")]
    assert types(interesting) == ["progress", "binary", "progress", "binary"]
    assert interesting[0][1] == {"value": 0, "max": 2, "prompt_id": prompt_id, "node": "21"}
    assert interesting[2][1]["value"] == 1
    blob = interesting[1][1]
    assert struct.unpack(">II", blob[:8]) == (1, 2)  # PREVIEW_IMAGE, PNG
    preview = Image.open(io.BytesIO(blob[8:]))
    assert (preview.format, preview.size, preview.getpixel((0, 0))) == ("PNG", (6, 4), (255, 0, 0))
    assert (await history_entry(http, fake.url, prompt_id))["outputs"] == {}

    modern, _ = await connect(http, fake, "modern")
    await modern.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    kind, data = await frame(modern)
    assert kind == "feature_flags"
    assert data == await get_json(http, fake.url + "/features")
    prompt_id = await submit(http, fake.url, graph, client_id="modern")
    events = await events_until_done(modern, prompt_id)
    interesting = [e for e in events if e[0] in ("progress", "binary")]
    assert types(interesting) == ["binary", "progress", "binary", "progress"]
    blob = interesting[0][1]
    event, length = struct.unpack(">II", blob[:8])
    assert event == 4  # PREVIEW_IMAGE_WITH_METADATA
    assert json.loads(blob[8 : 8 + length]) == {
        "node_id": "21",
        "prompt_id": prompt_id,
        "display_node_id": "21",
        "parent_node_id": None,
        "real_node_id": "21",
        "image_type": "image/png",
    }
    assert Image.open(io.BytesIO(blob[8 + length :])).size == (6, 4)
    # The handshake counts only as the first frame: sent later, it changes nothing.
    late, _ = await connect(http, fake, "late")
    await late.send_json({"type": "hello", "data": {}})
    await late.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    prompt_id = await submit(http, fake.url, graph, client_id="late")
    events = await events_until_done(late, prompt_id)
    assert "feature_flags" not in types(events)
    blobs = [data for kind, data in events if kind == "binary"]
    assert [struct.unpack(">I", blob[:4])[0] for blob in blobs] == [1, 1]
    for ws in (legacy, modern, late):
        await ws.close()


async def test_previews_of_a_prompt_without_client_are_broadcast(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws, _ = await connect(http, fake, "watcher")
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    await submit(http, fake.url, graph)
    seen = await wait_for(ws, "status", status={"exec_info": {"queue_remaining": 0}})
    assert {"progress", "binary", "progress_state", "status"} == set(types(seen))
    await ws.close()


async def test_an_identical_prompt_is_served_from_the_cache(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    await upload(http, fake.url, png())
    ws, sid = await connect(http, fake, "cache")
    first = await submit(http, fake.url, invert_graph(), client_id=sid)
    await events_until_done(ws, first)
    again = await submit(http, fake.url, invert_graph(), client_id=sid)
    events = await events_until_done(ws, again)
    assert types(events) == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        "executed",
        "progress_state",
        "execution_success",
        "status",
        "executing",
    ]
    assert events[3][1]["nodes"] == ["1", "2", "3"]
    assert events[4][1]["output"]["images"][0]["filename"] == "invert_00001_.png"
    # A new prefix: only SaveImage runs.
    third = await submit(http, fake.url, invert_graph(prefix="peer/other"), client_id=sid)
    events = await events_until_done(ws, third)
    assert events[3][1]["nodes"] == ["1", "2"]
    assert [d["node"] for k, d in events if k == "executing"] == ["3", None]
    # After another graph ran, the invert graph runs (and writes) again.
    await events_until_done(ws, await submit(http, fake.url, blur_graph(), client_id=sid))
    last = await submit(http, fake.url, invert_graph(), client_id=sid)
    events = await events_until_done(ws, last)
    executed = [d for k, d in events if k == "executed"]
    assert executed[0]["output"]["images"][0]["filename"] == "invert_00002_.png"
    assert sorted(p.name for p in (fake.dirs.output / "peer").iterdir()) == [
        "invert_00001_.png",
        "invert_00002_.png",
        "other_00001_.png",
    ]
    await ws.close()


async def test_a_runtime_error(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    await upload(http, fake.url, b"not an image", name="bad.png")
    ws, sid = await connect(http, fake, "err")
    prompt_id = await submit(http, fake.url, invert_graph("bad.png"), client_id=sid)
    events = await events_until_done(ws, prompt_id)
    assert types(events)[-4:] == ["executing", "execution_error", "status", "executing"]
    assert "execution_success" not in types(events)
    error = events[-3][1]
    assert error["node_id"] == "1"
    assert error["node_type"] == "LoadImage"
    assert error["executed"] == []
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["exception_message"].startswith("cannot identify image file")
    assert error["current_inputs"] == {"image": ["bad.png"]}
    assert isinstance(error["traceback"], list)
    entry = await history_entry(http, fake.url, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["outputs"] == {}
    assert entry["status"]["messages"][-1] == ["execution_error", error]
    await ws.close()


async def test_interrupts_stop_the_running_prompt_only(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws, sid = await connect(http, fake, "int")
    fake.slow(0.03, steps=3)
    running = await submit(http, fake.url, blur_graph(blurs=3), client_id=sid)
    queued = await submit(http, fake.url, blur_graph(blurs=1, prefix="next"), client_id=sid)
    await wait_for(ws, "executing", node="102")
    async with http.post(fake.url + "/interrupt", json={"prompt_id": queued}) as response:
        assert response.status == 200
    async with http.post(fake.url + "/interrupt", json={"prompt_id": running}) as response:
        assert response.status == 200
        assert await response.read() == b""
    events = await events_until_done(ws, running)
    assert types(events)[-3:] == ["execution_interrupted", "status", "executing"]
    interrupted = events[-3][1]
    assert set(interrupted) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert interrupted["node_id"] in ("102", "103")
    assert interrupted["node_type"] == "ImageBlur"
    assert set(interrupted["executed"]) >= {"1", "101"}
    entry = await history_entry(http, fake.url, running)
    assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    # The next prompt starts at once and is not affected.
    events = await events_until_done(ws, queued)
    assert "execution_success" in types(events)
    await ws.close()


async def test_an_interrupt_without_client_is_broadcast(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    ws, _ = await connect(http, fake, "bystander")
    fake.hang()
    prompt_id = await submit(http, fake.url, blur_graph())
    await wait_for(ws, "progress_state")
    async with http.post(fake.url + "/interrupt") as response:
        assert response.status == 200
    fake.hang(False)
    events = await wait_for(ws, "execution_interrupted")
    assert events[-1][1]["prompt_id"] == prompt_id
    assert "execution_start" not in types(events)
    await ws.close()
