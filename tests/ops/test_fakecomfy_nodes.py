"""The nodes the fake runs: image operations on Pillow, the output nodes' files, and
the simulated model nodes that answer for the model catalog."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from ops.fakecomfy import FakeComfy, demo
from tests.support.fakecomfy import (
    CHECKPOINT,
    events_until_done,
    frame,
    history_entry,
    png,
    post_prompt,
    submit,
    types,
    upload,
)


async def outputs(http: aiohttp.ClientSession, fake: FakeComfy, graph: dict[str, Any]) -> Any:
    entry = await history_entry(http, fake.url, await submit(http, fake.url, graph))
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


async def fetch(http: aiohttp.ClientSession, fake: FakeComfy, image: dict[str, str]) -> Image.Image:
    async with http.get(fake.url + "/view", params=image) as response:
        assert response.status == 200
        return Image.open(io.BytesIO(await response.read()))


def empty(width: int, height: int, color: int, batch: int = 1) -> dict[str, Any]:
    inputs = {"width": width, "height": height, "batch_size": batch, "color": color}
    return {"class_type": "EmptyImage", "inputs": inputs}


def save(source: str, prefix: str = "out") -> dict[str, Any]:
    return {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": prefix}}


async def test_empty_image_batches_and_preview(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    graph = {
        "1": empty(6, 4, 0x102030, batch=2),
        "2": save("1", "empty"),
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    out = await outputs(http, fake, graph)
    names = [i["filename"] for i in out["2"]["images"]]
    assert names == ["empty_00001_.png", "empty_00002_.png"]
    img = await fetch(http, fake, out["2"]["images"][1])
    assert (img.size, img.convert("RGB").getpixel((5, 3))) == ((6, 4), (0x10, 0x20, 0x30))
    previews = out["3"]["images"]
    assert [p["type"] for p in previews] == ["temp", "temp"]
    assert previews[0]["filename"].startswith("ComfyUI_temp_")
    assert previews[0]["filename"].endswith("_00001_.png")
    assert (fake.dirs.temp / previews[0]["filename"]).exists()
    await fetch(http, fake, previews[0])


async def test_scale_crop_and_blur(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    await upload(http, fake.url, png((0, 0, 255), size=(20, 10)), name="wide.png")
    scale = {
        "image": ["1", 0],
        "upscale_method": "nearest-exact",
        "width": 0,
        "height": 5,
        "crop": "disabled",
    }
    graph: dict[str, Any] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "wide.png"}},
        "2": {"class_type": "ImageScale", "inputs": scale},
        "3": save("2", "scaled"),
        "4": {
            "class_type": "ImageScale",
            "inputs": {
                **scale,
                "width": 8,
                "height": 8,
                "crop": "center",
                "upscale_method": "lanczos",
            },
        },
        "5": save("4", "cropped"),
    }
    out = await outputs(http, fake, graph)
    assert (await fetch(http, fake, out["3"]["images"][0])).size == (10, 5)
    assert (await fetch(http, fake, out["5"]["images"][0])).size == (8, 8)
    # A blur spreads a white square into its black surroundings.
    await upload(http, fake.url, _square(), name="square.png")
    blur = {"image": ["1", 0], "blur_radius": 3, "sigma": 2.0}
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "square.png"}},
        "2": {"class_type": "ImageBlur", "inputs": blur},
        "3": save("2", "blurred"),
    }
    out = await outputs(http, fake, graph)
    blurred = (await fetch(http, fake, out["3"]["images"][0])).convert("L").tobytes()
    edge, centre = blurred[10 * 21 + 6], blurred[10 * 21 + 10]
    assert 0 < edge < 255
    assert centre > edge


def _square() -> bytes:
    img = Image.new("RGB", (21, 21))
    img.paste((255, 255, 255), (7, 7, 14, 14))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_save_image_refuses_to_leave_the_output_folder(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    graph = {"1": empty(2, 2, 0), "2": save("1", "../escape")}
    ws = await http.ws_connect(fake.ws_url + "?clientId=esc")
    await frame(ws)
    prompt_id = await submit(http, fake.url, graph, client_id="esc")
    events = await events_until_done(ws, prompt_id)
    error = next(d for k, d in events if k == "execution_error")
    assert error["node_id"] == "2"
    assert "outside the output folder" in error["exception_message"]
    assert not (fake.dirs.output.parent / "escape_00001_.png").exists()
    await ws.close()


def text_to_image(checkpoint: str, steps: int = 3) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": save("8", "txt2img"),
    }


async def test_model_nodes_run_only_with_a_catalogued_checkpoint(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    status, answer = await post_prompt(http, fake.url, text_to_image("missing.safetensors"))
    assert status == 400
    error = answer["node_errors"]["4"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == f"ckpt_name: 'missing.safetensors' not in ['{CHECKPOINT}']"
    bogus = text_to_image(CHECKPOINT)
    bogus["3"]["inputs"]["sampler_name"] = "bogus"
    status, answer = await post_prompt(http, fake.url, bogus)
    sampler_error = answer["node_errors"]["3"]["errors"][0]
    assert sampler_error["details"].endswith("not in (list of length 36)")
    assert sampler_error["extra_info"]["input_config"] is None

    ws = await http.ws_connect(fake.ws_url + "?clientId=sd")
    await frame(ws)
    prompt_id = await submit(http, fake.url, text_to_image(CHECKPOINT), client_id="sd")
    events = await events_until_done(ws, prompt_id)
    assert "execution_success" in types(events)
    steps = [(k, d) for k, d in events if k in ("progress", "binary")]
    assert types(steps) == ["progress", "binary"] * 3
    assert [d["value"] for k, d in steps if k == "progress"] == [1, 2, 3]
    assert struct.unpack(">II", steps[1][1][:8]) == (1, 1)  # PREVIEW_IMAGE, JPEG
    assert Image.open(io.BytesIO(steps[1][1][8:])).format == "JPEG"
    executed = next(d for k, d in events if k == "executed")
    image = await fetch(http, fake, executed["output"]["images"][0])
    assert image.size == (64, 48)
    # Another seed, another picture; the same seed again (recomputed, since the other
    # prompt pushed it out of the cache), the same picture.
    other = text_to_image(CHECKPOINT)
    other["3"]["inputs"]["seed"] = 43
    out = await outputs(http, fake, other)
    assert (await fetch(http, fake, out["9"]["images"][0])).tobytes() != image.tobytes()
    again = text_to_image(CHECKPOINT)
    again["9"]["inputs"]["filename_prefix"] = "again"
    out = await outputs(http, fake, again)
    assert (await fetch(http, fake, out["9"]["images"][0])).tobytes() == image.tobytes()
    await ws.close()


async def test_the_demo_client_runs_the_whole_flow(fake: FakeComfy, tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "demo.png"
    assert await demo.run(fake.url, png((0, 0, 0)), out, say=lines.append) == 0
    assert Image.open(out).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert any("execution_success" in line for line in lines)
