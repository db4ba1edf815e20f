"""Prompt validation: every 400 shape of the reference's table, and what passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.ops.conftest import get_json, history_entry, invert_graph, png, post_prompt, upload

FAILED = "prompt_outputs_failed_validation"


async def refused(http: aiohttp.ClientSession, fake: FakeComfy, prompt: Any, **body: Any) -> Any:
    status, answer = await post_prompt(http, fake.url, prompt, **body)
    assert status == 400, answer
    assert set(answer) == {"error", "node_errors"}
    assert set(answer["error"]) == {"type", "message", "details", "extra_info"}
    return answer


def node_error(answer: Any, node: str) -> dict[str, Any]:
    error: dict[str, Any] = answer["node_errors"][node]["errors"][0]
    return error


async def test_unknown_and_missing_class_types(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    graph = invert_graph("example.png")
    graph["2"]["class_type"] = "NoSuchNode"
    answer = await refused(http, fake, graph)
    assert answer == {
        "error": {
            "type": "missing_node_type",
            "message": "Node 'NoSuchNode' not found. The custom node may not be installed.",
            "details": "Node ID '#2'",
            "extra_info": {"node_id": "2", "class_type": "NoSuchNode", "node_title": "NoSuchNode"},
        },
        "node_errors": {},
    }
    graph["2"]["_meta"] = {"title": "My Node"}
    answer = await refused(http, fake, graph)
    assert answer["error"]["message"].startswith("Node 'My Node' not found.")
    del graph["2"]["class_type"]
    answer = await refused(http, fake, graph)
    assert answer["error"]["type"] == "missing_node_type"
    assert answer["error"]["message"].startswith("Node 'My Node' has no class_type.")
    del graph["2"]["_meta"]
    answer = await refused(http, fake, graph)
    assert answer["error"]["message"] == (
        "Node 'ID #2' has no class_type. The workflow may be corrupted or a custom node is missing."
    )
    assert answer["error"]["extra_info"] == {"node_id": "2", "class_type": None, "node_title": None}


async def test_no_prompt_and_no_outputs(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    async with http.post(fake.url + "/prompt", json={"client_id": "x"}) as response:
        assert response.status == 400
        assert await response.json() == {
            "error": {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            },
            "node_errors": {},
        }
    no_outputs = {
        "type": "prompt_no_outputs",
        "message": "Prompt has no outputs",
        "details": "",
        "extra_info": {},
    }
    assert (await refused(http, fake, {}))["error"] == no_outputs
    graph = invert_graph("example.png")
    del graph["3"]
    assert await refused(http, fake, graph) == {"error": no_outputs, "node_errors": {}}


async def test_missing_required_input(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    graph = invert_graph("example.png")
    graph["2"]["inputs"] = {}
    answer = await refused(http, fake, graph)
    assert answer["error"] == {
        "type": FAILED,
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    }
    assert answer["node_errors"] == {
        "2": {
            "errors": [
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "image",
                    "extra_info": {"input_name": "image"},
                }
            ],
            "dependent_outputs": ["3"],
            "class_type": "ImageInvert",
        }
    }


async def test_bad_links(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    graph = invert_graph("example.png")
    graph["2"]["inputs"]["image"] = ["99", 0]
    error = node_error(await refused(http, fake, graph), "2")
    assert error["type"] == "exception_during_inner_validation"
    assert error["details"] == "'99'"
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert error["extra_info"]["linked_node"] == ["99", 0]
    assert isinstance(error["extra_info"]["traceback"], list)
    graph["2"]["inputs"]["image"] = ["1", 5]
    error = node_error(await refused(http, fake, graph), "2")
    assert error["type"] == "exception_during_inner_validation"
    assert error["extra_info"]["exception_type"] == "IndexError"
    assert error["details"] == "tuple index out of range"
    graph["2"]["inputs"]["image"] = ["1", 1]  # the MASK output
    error = node_error(await refused(http, fake, graph), "2")
    assert error["type"] == "return_type_mismatch"
    assert error["details"] == "image, received_type(MASK) mismatch input_type(IMAGE)"
    graph["2"]["inputs"]["image"] = ["1"]
    assert node_error(await refused(http, fake, graph), "2")["type"] == "bad_linked_input"


async def test_literal_values(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    graph: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 999999, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "bilinear",
                "width": 4,
                "height": 4,
                "crop": "disabled",
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v"}},
    }
    error = node_error(await refused(http, fake, graph), "1")
    assert error["type"] == "value_bigger_than_max"
    assert error["message"] == "Value 999999 bigger than max of 16384"
    assert error["details"] == "width"
    assert error["extra_info"]["received_value"] == 999999
    graph["1"]["inputs"]["width"] = 0
    error = node_error(await refused(http, fake, graph), "1")
    assert (error["type"], error["message"]) == (
        "value_smaller_than_min",
        "Value 0 smaller than min of 1",
    )
    graph["1"]["inputs"]["width"] = "abc"
    error = node_error(await refused(http, fake, graph), "1")
    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"
    graph["1"]["inputs"]["width"] = "16"
    graph["2"]["inputs"]["upscale_method"] = "bogus"
    answer = await refused(http, fake, graph)
    assert list(answer["node_errors"]) == ["2"]
    error = node_error(answer, "2")
    assert error["type"] == "value_not_in_list"
    assert error["details"] == (
        "upscale_method: 'bogus' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
    )
    graph["2"]["inputs"]["upscale_method"] = "area"
    status, answer = await post_prompt(http, fake.url, graph)
    assert status == 200, answer
    entry = await history_entry(http, fake.url, answer["prompt_id"])
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 16  # converted in place


async def test_load_image_checks_its_file(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    error = node_error(await refused(http, fake, invert_graph("does_not_exist.png")), "1")
    assert error == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": "image - Invalid image file: does_not_exist.png",
        "extra_info": {"input_name": "image"},
    }
    await upload(http, fake.url, png(), name="t.png", subfolder="sub/a")
    for index, name in enumerate(("sub/a/t.png", "sub/a/t.png [input]")):
        status, answer = await post_prompt(http, fake.url, invert_graph(name, prefix=f"s{index}"))
        assert status == 200
        entry = await history_entry(http, fake.url, answer["prompt_id"])
        assert entry["status"]["status_str"] == "success"
    await refused(http, fake, invert_graph("t.png [input]"))
    await refused(http, fake, invert_graph("../outside.png"))


async def test_a_cycle_is_named_on_each_node(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    graph = invert_graph("example.png")
    graph["2"]["inputs"]["image"] = ["3", 0]
    answer = await refused(http, fake, graph)
    assert answer["error"]["type"] == FAILED
    cycle = "3 (SaveImage) -> 2 (ImageInvert) -> 3 (SaveImage)"
    assert answer["error"]["details"] == f"Dependency cycle detected: {cycle}"
    assert set(answer["node_errors"]) == {"2", "3"}
    for node in ("2", "3"):
        assert node_error(answer, node)["type"] == "dependency_cycle"


async def test_one_valid_output_is_enough(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    graph = invert_graph("example.png")
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}
    status, answer = await post_prompt(http, fake.url, graph)
    assert status == 200
    assert answer["node_errors"]["4"]["errors"][0]["type"] == "required_input_missing"
    entry = await history_entry(http, fake.url, answer["prompt_id"])
    assert entry["prompt"][4] == ["3"]
    # partial_execution_targets: only those outputs are validated and run.
    status, answer = await post_prompt(http, fake.url, graph, partial_execution_targets=["3"])
    assert (status, answer["node_errors"]) == (200, {})
    answer = await refused(http, fake, graph, partial_execution_targets=["9"])
    assert answer["error"]["type"] == "prompt_no_outputs"


async def test_node_subset_and_model_catalog(tmp_path: Path) -> None:
    config = FakeConfig(base_dir=tmp_path, node_types=["LoadImage", "SaveImage"])
    async with running_fake(config) as fake, aiohttp.ClientSession() as http:
        assert set(await get_json(http, fake.url + "/object_info")) == {"LoadImage", "SaveImage"}
        answer = await refused(http, fake, invert_graph("example.png"))
        assert answer["error"]["type"] == "missing_node_type"
        graph = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
        }
        assert (await refused(http, fake, graph))["error"]["type"] == "missing_node_type"
