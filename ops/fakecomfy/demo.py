"""Try the whole job flow against a ComfyUI server (the fake, or a real one):

    python -m ops.fakecomfy --port 8188 &
    python -m ops.fakecomfy.demo --url http://127.0.0.1:8188

It uploads an image, opens the WebSocket, submits LoadImage → ImageInvert →
SaveImage, prints every event as it arrives, then reads the history and downloads
the result with ``/view``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

__all__ = ["main", "run"]


def _sample() -> bytes:
    img = Image.linear_gradient("L").resize((128, 128)).convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _short(data: Any) -> str:
    text = json.dumps(data)
    return text if len(text) <= 110 else text[:107] + "..."


async def run(url: str, image: bytes, out: Path, say: Any = print) -> int:
    """The flow; returns 0 when the prompt succeeded and its output was saved."""
    client = f"demo-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.get(url + "/system_stats") as response:
            stats = await response.json()
        say(
            f"server: ComfyUI {stats['system']['comfyui_version']} on {stats['devices'][0]['name']}"
        )
        form = aiohttp.FormData()
        form.add_field("image", image, filename="demo.png", content_type="image/png")
        async with http.post(url + "/upload/image", data=form) as response:
            uploaded = await response.json()
        say(f"uploaded: {uploaded}")
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["name"]}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {
                "class_type": "SaveImage",
                "inputs": {"images": ["2", 0], "filename_prefix": "demo/invert"},
            },
        }
        async with http.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={client}") as ws:
            body = {"prompt": graph, "client_id": client}
            async with http.post(url + "/prompt", json=body) as response:
                answer = await response.json()
            if response.status != 200:
                say(f"refused ({response.status}): {_short(answer)}")
                return 1
            prompt_id = answer["prompt_id"]
            say(f"queued: {prompt_id} (number {answer['number']})")
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    say(f"  ws binary frame, {len(msg.data)} bytes")
                    continue
                event = json.loads(msg.data)
                say(f"  ws {event['type']}: {_short(event['data'])}")
                data = event["data"]
                finished = data.get("node") is None and data.get("prompt_id") == prompt_id
                if event["type"] == "executing" and finished:
                    break
        async with http.get(f"{url}/history/{prompt_id}") as response:
            entry = (await response.json())[prompt_id]
        say(f"status: {entry['status']['status_str']}")
        if entry["status"]["status_str"] != "success":
            return 1
        result = entry["outputs"]["3"]["images"][0]
        async with http.get(url + "/view", params=result) as response:
            await asyncio.to_thread(out.write_bytes, await response.read())
        say(f"output: {result} -> saved to {out}")
        return 0


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ops.fakecomfy.demo", description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8188")
    p.add_argument("--image", type=Path, help="image to invert (default: a gradient)")
    p.add_argument("--out", type=Path, default=Path("fakecomfy-demo.png"))
    args = p.parse_args(argv)
    image = args.image.read_bytes() if args.image else _sample()
    sys.exit(asyncio.run(run(args.url.rstrip("/"), image, args.out)))


if __name__ == "__main__":
    main()
