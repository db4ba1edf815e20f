"""Isolation: a client key never sees, attaches to, changes or hears from another key's
sessions, projects (with their scenes and clips) or media, nor learns which project
names another key uses. Another key's id answers 404, exactly like an id that does not
exist; admin sees everything. (Jobs: ``tests/comfyui/test_job_isolation.py``.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.support import Easel, collect, png
from transport.client import Client
from transport.protocol import CloseCode, ContentType, FrameType, decode, encode_hello


@dataclass
class Caller:
    easel: Easel
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.request(method, self.easel.url + path, json=body) as answer,
        ):
            if answer.status == 204:
                return 204, None
            if answer.content_type.endswith("json"):
                return answer.status, await answer.json(content_type=None)
            return answer.status, await answer.read()

    async def upload(self, data: bytes) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="a.png", content_type="image/png")
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(self.easel.url + "/api/v1/media", data=form) as answer,
        ):
            assert answer.status == 201
            made: dict[str, Any] = await answer.json()
            return made


async def client(easel: Easel, name: str) -> Caller:
    status, made = await easel.post("/api/v1/keys", {"name": name, "role": "client"})
    assert status == 201, made
    return Caller(easel, made["token"])


@pytest.fixture
async def pair(easel: Easel) -> tuple[Caller, Caller, Caller]:
    """(alice, bob, admin)."""
    assert easel.admin_key is not None
    return await client(easel, "alice"), await client(easel, "bob"), Caller(easel, easel.admin_key)


def _not_found(answer: tuple[int, Any]) -> bool:
    status, body = answer
    return status == 404 and body["code"] == "not_found"


async def test_sessions_are_their_owners_only(pair: tuple[Caller, Caller, Caller]) -> None:
    alice, bob, admin = pair
    status, mine = await alice.call("POST", "/api/v1/sessions", {})
    assert status == 201
    path = f"/api/v1/sessions/{mine['id']}"
    ghost = "/api/v1/sessions/0123456789abcdef"
    for method, body in (("GET", None), ("PATCH", {"params": {}}), ("DELETE", None)):
        assert _not_found(await bob.call(method, path, body)), method
        # the same answer as for a session that never existed
        assert (await bob.call(method, path, body))[1]["detail"].replace(mine["id"], "X") == (
            await bob.call(method, ghost, body)
        )[1]["detail"].replace("0123456789abcdef", "X")
    assert (await bob.call("GET", "/api/v1/sessions"))[1]["items"] == []
    listed = (await alice.call("GET", "/api/v1/sessions"))[1]["items"]
    assert [s["id"] for s in listed] == [mine["id"]]
    assert (await alice.call("GET", path))[0] == 200
    assert (await admin.call("GET", path))[0] == 200
    assert mine["id"] in [
        s["id"] for s in (await admin.call("GET", "/api/v1/sessions"))[1]["items"]
    ]
    assert (await alice.call("PATCH", path, {"params": {}}))[0] == 200


async def _socket(
    easel: Easel, path: str, token: str, hello: bytes | None = None
) -> tuple[list[Any], int | None]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(easel.url + path, protocols=("easel.v1",), headers=headers) as ws,
    ):
        if hello is not None:
            await ws.send_bytes(hello)
        first = await ws.receive()
        frames = [decode(first.data)] if first.type is aiohttp.WSMsgType.BINARY else []
        if frames and frames[0].type is FrameType.WELCOME:
            return frames, None
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                frames.append(decode(message.data))
        return frames, ws.close_code


async def test_sockets_attach_only_their_owners(
    easel: Easel, pair: tuple[Caller, Caller, Caller]
) -> None:
    alice, bob, admin = pair
    _, mine = await alice.call("POST", "/api/v1/sessions", {})
    own_ws = f"/api/v1/sessions/{mine['id']}/ws"
    frames, code = await _socket(easel, own_ws, bob.token)
    assert ([f.header["code"] for f in frames], code) == (["not_found"], CloseCode.UNKNOWN_SESSION)
    hello = encode_hello(session=mine["id"], resume=mine["token"])
    frames, code = await _socket(easel, "/api/v1/ws", bob.token, hello)
    assert ([f.header["code"] for f in frames], code) == (["not_found"], CloseCode.UNKNOWN_SESSION)
    frames, _ = await _socket(easel, own_ws, alice.token)
    assert frames[0].type is FrameType.WELCOME
    frames, _ = await _socket(easel, "/api/v1/ws", alice.token, hello)
    assert frames[0].type is FrameType.WELCOME
    frames, _ = await _socket(easel, own_ws, admin.token)
    assert frames[0].type is FrameType.WELCOME
    # a session made over HELLO belongs to the key that said it
    frames, _ = await _socket(easel, "/api/v1/ws", bob.token, encode_hello(pipeline="passthrough"))
    bobs = frames[0].header["session"]
    assert [s["id"] for s in (await bob.call("GET", "/api/v1/sessions"))[1]["items"]] == [bobs]
    assert _not_found(await alice.call("GET", f"/api/v1/sessions/{bobs}"))


async def test_results_go_only_to_their_owner(
    easel: Easel, pair: tuple[Caller, Caller, Caller]
) -> None:
    alice, bob, _ = pair
    _, mine = await alice.call("POST", "/api/v1/sessions", {})
    async with await Client.connect(easel.url, token=mine["token"], session=mine["id"]) as own:
        _, code = await _socket(easel, f"/api/v1/sessions/{mine['id']}/ws", bob.token)
        assert code == CloseCode.UNKNOWN_SESSION  # not even "already attached"
        await own.send_frame(1, ContentType.PNG, png())
        [answer] = await collect(own, 1)
        assert getattr(answer, "seq", None) == 1


async def test_projects_scenes_and_clips_are_their_owners_only(
    pair: tuple[Caller, Caller, Caller],
) -> None:
    alice, bob, admin = pair
    _, project = await alice.call("POST", "/api/v1/projects", {"name": "mine"})
    base = f"/api/v1/projects/{project['id']}"
    _, scene = await alice.call("POST", base + "/scenes", {"name": "s"})
    scene_path = f"{base}/scenes/{scene['id']}"
    _, clip = await alice.call("POST", scene_path + "/clips", {"start": 0, "duration": 1})
    clip_path = f"{scene_path}/clips/{clip['id']}"
    attempts = [
        ("GET", base, None),
        ("PATCH", base, {"description": "hacked"}),
        ("DELETE", base, None),
        ("GET", base + "/scenes", None),
        ("POST", base + "/scenes", {"name": "x"}),
        ("PUT", base + "/scenes/order", {"scene_ids": [scene["id"]]}),
        ("GET", scene_path, None),
        ("PATCH", scene_path, {"name": "x"}),
        ("DELETE", scene_path, None),
        ("GET", scene_path + "/clips", None),
        ("POST", scene_path + "/clips", {"start": 0, "duration": 1}),
        ("GET", clip_path, None),
        ("PATCH", clip_path, {"name": "x"}),
        ("DELETE", clip_path, None),
    ]
    for method, path, body in attempts:
        assert _not_found(await bob.call(method, path, body)), (method, path)
    assert (await bob.call("GET", "/api/v1/projects"))[1]["items"] == []
    assert (await bob.call("GET", "/api/v1/projects"))[1]["total"] == 0
    assert [p["id"] for p in (await alice.call("GET", "/api/v1/projects"))[1]["items"]] == [
        project["id"]
    ]
    assert (await alice.call("GET", clip_path))[1]["id"] == clip["id"]
    assert (await admin.call("GET", clip_path))[0] == 200
    assert (await alice.call("GET", base))[1]["description"] == ""  # bob changed nothing


async def test_project_names_are_unique_per_key(pair: tuple[Caller, Caller, Caller]) -> None:
    alice, bob, admin = pair
    projects = "/api/v1/projects"
    for caller in (alice, bob, admin):
        status, made = await caller.call("POST", projects, {"name": "x"})
        assert (status, made["name"]) == (201, "x")
    status, problem = await alice.call("POST", projects, {"name": "x"})
    assert (status, problem["code"]) == (409, "conflict")
    _, other = await bob.call("POST", projects, {"name": "y"})
    status, problem = await bob.call("PATCH", f"{projects}/{other['id']}", {"name": "x"})
    assert (status, problem["code"]) == (409, "conflict")
    _, free = await alice.call("POST", projects, {"name": "y"})  # bob's "y" is no conflict
    assert free["name"] == "y"
    assert (await admin.call("GET", projects))[1]["total"] == 5


async def test_media_is_its_owners_only(pair: tuple[Caller, Caller, Caller]) -> None:
    alice, bob, admin = pair
    stored = await alice.upload(png())
    one = f"/api/v1/media/{stored['id']}"
    for method, path in (("GET", one), ("GET", one + "/meta"), ("DELETE", one)):
        assert _not_found(await bob.call(method, path)), (method, path)
    assert (await bob.call("HEAD", one))[0] == 404
    assert (await alice.call("GET", one))[0] == 200
    assert (await admin.call("GET", one + "/meta"))[0] == 200
    assert (await alice.call("DELETE", one))[0] == 204
