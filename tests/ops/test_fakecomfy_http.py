"""The fake's HTTP API against the reference: informational GETs, the /api aliases,
the Origin check, the 500 quirk, upload, view, queue, history."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from ops.fakecomfy.config import MODEL_FOLDERS
from tests.support.fakecomfy import (
    CHECKPOINT,
    get_json,
    history_entry,
    invert_graph,
    png,
    post_prompt,
    submit,
    upload,
)

SERVER_500 = "500 Internal Server Error\n\nServer got itself in trouble"


async def test_informational_gets_have_the_real_shapes(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    async with http.get(fake.url + "/system_stats") as response:
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["Server"].startswith("Python/3.")
        stats = await response.json()
    assert stats["system"]["comfyui_version"] == "0.28.1"
    assert set(stats["system"]) >= {"os", "ram_total", "ram_free", "python_version", "argv"}
    assert stats["devices"][0]["type"] == "cpu"
    assert set(stats["devices"][0]) == {
        "name",
        "type",
        "index",
        "vram_total",
        "vram_free",
        "torch_vram_total",
        "torch_vram_free",
    }
    assert await get_json(http, fake.url + "/queue") == {"queue_running": [], "queue_pending": []}
    assert await get_json(http, fake.url + "/prompt") == {"exec_info": {"queue_remaining": 0}}
    assert await get_json(http, fake.url + "/history") == {}
    assert await get_json(http, fake.url + "/history/nope") == {}
    assert await get_json(http, fake.url + "/embeddings") == []
    features = await get_json(http, fake.url + "/features")
    assert features["supports_preview_metadata"] is True
    assert features["max_upload_size"] == 104857600
    assert await get_json(http, fake.url + "/models") == list(MODEL_FOLDERS)
    assert await get_json(http, fake.url + "/models/checkpoints") == [CHECKPOINT]
    assert await get_json(http, fake.url + "/models/loras") == []
    async with http.get(fake.url + "/models/nonexistent") as response:
        assert response.status == 404
        assert await response.read() == b""
    async with http.get(fake.url + "/") as response:
        assert response.content_type == "text/html"
    async with http.get(fake.url + "/health") as response:
        assert response.status == 404


async def test_object_info_lists_the_nodes_with_real_schemas(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    (fake.dirs.input / "b.png").write_bytes(png())
    info = await get_json(http, fake.url + "/object_info")
    assert {
        "LoadImage",
        "ImageInvert",
        "ImageScale",
        "EmptyImage",
        "ImageBlur",
        "SaveImage",
        "PreviewImage",
        "SaveImageWebsocket",
        "KSampler",
        "CheckpointLoaderSimple",
        "VAEDecode",
    } <= set(info)
    keys = {
        "input",
        "input_order",
        "is_input_list",
        "output",
        "output_is_list",
        "output_name",
        "name",
        "display_name",
        "description",
        "python_module",
        "category",
        "output_node",
        "has_intermediate_output",
        "search_aliases",
    }
    assert all(keys <= set(entry) for entry in info.values())
    load = info["LoadImage"]
    assert load["input"]["required"]["image"] == [["b.png", "example.png"], {"image_upload": True}]
    assert load["output"] == ["IMAGE", "MASK"]
    assert load["output_node"] is False
    assert info["ImageInvert"]["input"] == {"required": {"image": ["IMAGE"]}}
    width = info["EmptyImage"]["input"]["required"]["width"]
    assert width == ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]
    assert info["ImageScale"]["input"]["required"]["upscale_method"] == [
        ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    ]
    blur = info["ImageBlur"]
    assert blur["input"]["required"]["sigma"][1]["max"] == 10.0
    assert {"output_tooltips", "deprecated", "experimental", "dev_only", "api_node"} <= set(blur)
    save = info["SaveImage"]
    assert save["output_node"] is True
    assert save["output"] == ["IMAGE"]
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    ckpt = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert ckpt == [CHECKPOINT]
    one = await get_json(http, fake.url + "/object_info/ImageInvert")
    assert one == {"ImageInvert": info["ImageInvert"]}
    assert await get_json(http, fake.url + "/object_info/NoSuchNode") == {}


async def test_every_route_is_also_under_api(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    for path in (
        "/system_stats",
        "/queue",
        "/prompt",
        "/history",
        "/models/checkpoints",
        "/object_info/ImageInvert",
        "/features",
        "/embeddings",
    ):
        assert await get_json(http, fake.url + "/api" + path) == await get_json(
            http, fake.url + path
        )
    prompt_id = await submit(http, fake.url + "/api", invert_graph(image="example.png"))
    await history_entry(http, fake.url + "/api", prompt_id)
    async with http.ws_connect(fake.url + "/api/ws?clientId=via-api") as ws:
        greeting = await ws.receive_json()
        assert greeting["data"]["sid"] == "via-api"
    async with http.get(fake.url + "/api/_fake/state") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://localhost:{port}", 403),
        ("http://evil.example", 403),
        ("http://127.0.0.1:{port}", 200),
        (None, 200),
    ],
)
async def test_origin_must_match_a_loopback_host(
    fake: FakeComfy, http: aiohttp.ClientSession, origin: str | None, status: int
) -> None:
    headers = {} if origin is None else {"Origin": origin.format(port=fake.port)}
    async with http.get(fake.url + "/system_stats", headers=headers) as response:
        assert response.status == status
        if status == 403:
            assert await response.read() == b""
    if status == 403:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(fake.ws_url, headers=headers)
        assert refused.value.status == 403
    async with http.get(fake.url + "/queue", headers={"Sec-Fetch-Site": "cross-site"}) as response:
        assert response.status == 403


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/prompt", b"{not json"),
        ("/prompt", b'{"prompt": [1, 2]}'),
        ("/prompt", b'{"prompt": {"1": "LoadImage"}}'),
        ("/prompt", b"42"),
        ("/queue", b"nope"),
        ("/free", b"nope"),
    ],
)
async def test_malformed_bodies_get_the_plain_text_500(
    fake: FakeComfy, http: aiohttp.ClientSession, path: str, body: bytes
) -> None:
    async with http.post(fake.url + path, data=body) as response:
        assert response.status == 500
        assert response.content_type == "text/plain"
        assert await response.text() == SERVER_500


async def test_history_max_items_abc_is_a_500(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    async with http.get(fake.url + "/history?max_items=abc") as response:
        assert response.status == 500
        assert await response.text() == SERVER_500


async def test_upload_answers_and_renames_like_a_real_server(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    url = fake.url
    assert await upload(http, url, png()) == (
        200,
        {"name": "t.png", "subfolder": "", "type": "input"},
    )
    assert (fake.dirs.input / "t.png").read_bytes() == png()
    # Same bytes: kept, same name. Other bytes: renamed.
    assert (await upload(http, url, png()))[1]["name"] == "t.png"
    assert (await upload(http, url, png((1, 2, 3))))[1]["name"] == "t (1).png"
    assert (await upload(http, url, png((4, 5, 6))))[1]["name"] == "t (2).png"
    status, body = await upload(http, url, png((7, 8, 9)), overwrite="true")
    assert body["name"] == "t.png"
    assert (fake.dirs.input / "t.png").read_bytes() == png((7, 8, 9))
    answer = await upload(http, url, png(), name="s.png", subfolder="sub/a")
    assert answer == (200, {"name": "s.png", "subfolder": "sub/a", "type": "input"})
    assert (fake.dirs.input / "sub" / "a" / "s.png").exists()
    status, body = await upload(http, url, png(), name="o.png", type="output")
    assert (status, body["type"]) == (200, "output")
    assert (fake.dirs.output / "o.png").exists()
    assert await upload(http, url, b"text, not an image", name="bad.png") == (
        200,
        {"name": "bad.png", "subfolder": "", "type": "input"},
    )
    assert await upload(http, url, png(), field="file") == (400, "")
    assert await upload(http, url, png(), subfolder="../../etc") == (400, "")
    async with http.post(url + "/upload/image", data={"type": "input"}) as response:
        assert response.status == 400


async def test_upload_over_the_size_limit_is_a_413(tmp_path: Path) -> None:
    config = FakeConfig(base_dir=tmp_path, max_upload_size=1024)
    async with running_fake(config) as fake, aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("image", b"x" * 4096, filename="big.png")
        async with http.post(fake.url + "/upload/image", data=form) as response:
            assert response.status == 413
            assert await response.text() == "Maximum request body size 1024 exceeded."


async def test_upload_mask_puts_the_alpha_on_the_original(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    await upload(http, fake.url, png((200, 10, 10)), name="orig.png")
    form = aiohttp.FormData()
    form.add_field("image", png((0, 0, 0, 77)), filename="masked.png")
    form.add_field("original_ref", '{"filename": "orig.png", "type": "input", "subfolder": ""}')
    async with http.post(fake.url + "/upload/mask", data=form) as response:
        assert await response.json() == {"name": "masked.png", "subfolder": "", "type": "input"}
    with Image.open(fake.dirs.input / "masked.png") as img:
        assert img.mode == "RGBA"
        assert img.getpixel((0, 0)) == (200, 10, 10, 77)


async def test_view_serves_files_and_checks_paths(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    await upload(
        http, fake.url, png((10, 20, 30, 40)), name="v.png", subfolder="peer", type="output"
    )
    view = fake.url + "/view"
    async with http.get(view, params={"filename": "v.png", "subfolder": "peer"}) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert response.headers["Content-Disposition"] == 'filename="v.png"'
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert await response.read() == png((10, 20, 30, 40))
    for params, status in [
        ({"filename": "v.png"}, 404),  # the subfolder is required
        ({"filename": "peer/v.png"}, 404),  # the basename is used
        ({"subfolder": "peer"}, 404),
        ({"filename": "v.png", "subfolder": "peer", "type": "bogus"}, 400),
        ({"filename": "../main.py"}, 400),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "v.png", "subfolder": "../.."}, 403),
        ({"filename": "v.png", "subfolder": "peer", "type": "input"}, 404),
    ]:
        async with http.get(view, params=params) as response:
            assert response.status == status, params
            assert await response.read() == b""
    base = {"filename": "v.png", "subfolder": "peer"}
    async with http.get(view, params={**base, "preview": "jpeg;50"}) as response:
        assert response.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(await response.read())).format == "JPEG"
    async with http.get(view, params={**base, "preview": "webp"}) as response:
        assert response.content_type == "image/webp"
    async with http.get(view, params={**base, "channel": "rgb"}) as response:
        assert Image.open(io.BytesIO(await response.read())).mode == "RGB"
    async with http.get(view, params={**base, "channel": "a"}) as response:
        alpha = Image.open(io.BytesIO(await response.read()))
        assert alpha.mode == "RGBA"
        assert alpha.getpixel((0, 0)) == (0, 0, 0, 40)


async def test_number_counts_every_post_and_prompt_ids_are_checked(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    status, body = await post_prompt(http, fake.url, {})
    assert status == 400
    status, body = await post_prompt(http, fake.url, invert_graph(image="example.png"))
    assert (status, body["number"], body["node_errors"]) == (200, 1, {})
    status, body = await post_prompt(http, fake.url, invert_graph(image="example.png"), number=42)
    assert body["number"] == 42.0
    assert isinstance(body["number"], float)
    runs_last = body["prompt_id"]  # number 42 comes after every counter number below
    invalid = {
        "type": "invalid_prompt_id",
        "message": "prompt_id must be a valid UUID",
        "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit "
        "it to let the server generate one",
        "extra_info": {},
    }
    for bad in ("my-job-1", "216C4712-3DD1-4632-84D0-9DF3923483FB"):
        status, body = await post_prompt(http, fake.url, invert_graph(), prompt_id=bad)
        assert (status, body) == (400, {"error": invalid, "node_errors": {}})
    mine = "216c4712-3dd1-4632-84d0-9df3923483fb"
    extra = {"my_tag": "abc"}
    for prefix in ("dup/a", "dup/b"):
        graph = invert_graph(image="example.png", prefix=prefix)
        assert await submit(http, fake.url, graph, prompt_id=mine, extra_data=extra) == mine
    # A duplicate id is accepted and its history entry overwritten.
    last = await submit(http, fake.url, invert_graph(image="example.png", prefix="last"))
    await history_entry(http, fake.url, last)  # one prompt at a time: both dups ran before
    await history_entry(http, fake.url, runs_last)
    entry = await history_entry(http, fake.url, mine)
    assert entry["outputs"]["3"]["images"][0]["filename"] == "b_00001_.png"
    # number 1, number 42, mine (twice, one entry), last
    assert len(await get_json(http, fake.url + "/history")) == 4
    assert entry["prompt"][3]["my_tag"] == "abc"
    assert isinstance(entry["prompt"][3]["create_time"], int)


async def test_history_is_bounded_paged_and_deletable(tmp_path: Path) -> None:
    async with (
        running_fake(FakeConfig(base_dir=tmp_path, max_history=3)) as fake,
        aiohttp.ClientSession() as http,
    ):
        ids = []
        for n in range(4):
            ids.append(await submit(http, fake.url, invert_graph("example.png", prefix=f"h{n}")))
            await history_entry(http, fake.url, ids[-1])
        history = await get_json(http, fake.url + "/history")
        assert list(history) == ids[1:]
        assert list(await get_json(http, fake.url + "/history", max_items=2)) == ids[2:]
        paged = await get_json(http, fake.url + "/history", offset=1, max_items=1)
        assert list(paged) == ids[2:3]
        async with http.post(fake.url + "/history", json={"delete": [ids[2]]}) as response:
            assert response.status == 200
            assert await response.read() == b""
        assert list(await get_json(http, fake.url + "/history")) == [ids[1], ids[3]]
        async with http.post(fake.url + "/history", json={"clear": True}) as response:
            assert response.status == 200
        assert await get_json(http, fake.url + "/history") == {}


async def test_free_and_interrupt_answer_empty_200s(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    for path, body in [
        ("/free", {"unload_models": True}),
        ("/free", {}),
        ("/interrupt", None),
        ("/interrupt", {"prompt_id": "not-running"}),
    ]:
        async with http.post(fake.url + path, json=body) as response:
            assert response.status == 200
            assert await response.read() == b""
