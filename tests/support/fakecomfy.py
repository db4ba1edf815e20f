"""Helpers for tests that talk to the fake ComfyUI server: images, graphs, the few
requests every such test makes, and reading its WebSocket."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
from PIL import Image

from ops.fakecomfy import FakeComfy

CHECKPOINT = "sd15.safetensors"
Event = tuple[str, Any]
"""A WebSocket frame: ``(type, data)`` for a text frame, ``("binary", bytes)`` otherwise."""


def png(color: tuple[int, ...] = (10, 100, 200), size: tuple[int, int] = (8, 8)) -> bytes:
    mode = "RGBA" if len(color) == 4 else "RGB"
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size: tuple[int, int] = (16, 16)) -> bytes:
    """An image whose pixels take many values (so an inversion is checked per value)."""
    img = Image.new("RGB", size)
    img.putdata(
        [
            ((x * 37) % 256, (y * 91) % 256, (x * y * 13) % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(
    http: aiohttp.ClientSession,
    url: str,
    data: bytes,
    name: str = "t.png",
    field: str = "image",
    **fields: str,
) -> tuple[int, Any]:
    """POST /upload/image; ``(status, JSON body or text)``."""
    form = aiohttp.FormData()
    form.add_field(field, data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    async with http.post(url + "/upload/image", data=form) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else text


def invert_graph(image: str = "t.png", prefix: str = "peer/invert") -> dict[str, Any]:
    """LoadImage(1) → ImageInvert(2) → SaveImage(3)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def blur_graph(blurs: int = 2, size: int = 16, prefix: str = "blur") -> dict[str, Any]:
    """EmptyImage(1) → ImageBlur(101) → … → SaveImage(9)."""
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0x336699},
        },
    }
    source = "1"
    for index in range(blurs):
        node = str(101 + index)
        graph[node] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [source, 0], "blur_radius": 3, "sigma": 1.0},
        }
        source = node
    graph["9"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [source, 0], "filename_prefix": prefix},
    }
    return graph


async def post_prompt(
    http: aiohttp.ClientSession, url: str, prompt: Any, **body: Any
) -> tuple[int, Any]:
    async with http.post(url + "/prompt", json={"prompt": prompt, **body}) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else text


async def submit(http: aiohttp.ClientSession, url: str, prompt: Any, **body: Any) -> str:
    """POST /prompt that must be accepted; returns the prompt id."""
    status, answer = await post_prompt(http, url, prompt, **body)
    assert status == 200, answer
    prompt_id: str = answer["prompt_id"]
    return prompt_id


async def get_json(http: aiohttp.ClientSession, url: str, **params: Any) -> Any:
    async with http.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> Event:
    msg = await ws.receive(timeout=timeout)
    if msg.type == aiohttp.WSMsgType.TEXT:
        data = json.loads(msg.data)
        return data["type"], data["data"]
    if msg.type == aiohttp.WSMsgType.BINARY:
        return "binary", msg.data
    return "closed", ws.close_code


async def events_until_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> list[Event]:
    """Every frame up to and including ``executing`` with ``node: null`` for the prompt."""
    events: list[Event] = []
    while True:
        kind, data = await frame(ws)
        events.append((kind, data))
        assert kind != "closed", events
        if kind == "executing" and data["node"] is None and data.get("prompt_id") == prompt_id:
            return events


async def wait_for(ws: aiohttp.ClientWebSocketResponse, kind: str, **match: Any) -> list[Event]:
    """Frames up to and including the first ``kind`` whose data contains ``match``."""
    events: list[Event] = []
    while True:
        got, data = await frame(ws)
        events.append((got, data))
        assert got != "closed", events
        if got == kind and all(data.get(k) == v for k, v in match.items()):
            return events


async def history_entry(http: aiohttp.ClientSession, url: str, prompt_id: str) -> dict[str, Any]:
    """Poll ``/history/{id}`` until the prompt has finished (bounded)."""
    for _ in range(500):
        found = await get_json(http, f"{url}/history/{prompt_id}")
        if found:
            entry: dict[str, Any] = found[prompt_id]
            return entry
        await asyncio.sleep(0.02)
    raise AssertionError(f"{prompt_id} never reached the history")


def types(events: list[Event]) -> list[str]:
    return [kind for kind, _ in events]


async def successes(fake: FakeComfy) -> int:
    """Prompts that ran to success on a fake (its history)."""
    async with aiohttp.ClientSession() as http, http.get(fake.url + "/history") as answer:
        entries = await answer.json()
    return sum(entry["status"]["status_str"] == "success" for entry in entries.values())
