"""Fake ComfyUI servers on free ports, and the workflows the fleet tests send them."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from actors.domain import Domain
from engine.settings import Settings
from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.support import ServerStarter, seed_sqlite
from transport.app import ADMIN_KEY_FILE, create_app
from transport.client import Client
from transport.keys import DOMAIN, STORE

CHECKPOINT = "sd15.safetensors"


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeComfy]:
    """A fake with one checkpoint in its catalog."""
    async with running_fake(
        FakeConfig(base_dir=tmp_path / "fake", models={"checkpoints": [CHECKPOINT]})
    ) as server:
        yield server


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (bounded); returns that."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def png(color: tuple[int, int, int] = (10, 100, 200), size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def invert_graph(image: str = "example.png", prefix: str = "easel/invert") -> dict[str, Any]:
    """LoadImage(1) → ImageInvert(2) → SaveImage(3)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def empty_graph(
    color: int = 0x336699, size: int = 8, prefix: str = "easel/empty"
) -> dict[str, Any]:
    """EmptyImage(1) → SaveImage(9): the trivial workflow."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
        },
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def txt2img_graph(checkpoint: str = CHECKPOINT, seed: int = 1, steps: int = 2) -> dict[str, Any]:
    """A text-to-image graph naming a checkpoint (runs on the fake's simulated model nodes)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
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
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t2i"}},
    }


class Easel:
    """An Easel app on a real socket, with an HTTP session to talk REST to it (as the
    admin key of its first start, or as a client key from :meth:`client`)."""

    def __init__(
        self,
        server: TestServer,
        http: aiohttp.ClientSession,
        opened: list[aiohttp.ClientSession] | None = None,
    ) -> None:
        self.server = server
        self.http = http
        self.url = str(server.make_url("")).rstrip("/")
        self._opened = opened if opened is not None else []

    async def client(self, name: str) -> Easel:
        """The same app through a new client key called ``name``."""
        made = await self.ok("POST", "/api/v1/keys", {"name": name, "role": "client"}, 201)
        http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {made['token']}"})
        self._opened.append(http)
        return Easel(self.server, http, self._opened)

    @property
    def domain(self) -> Domain:
        return self.server.app[DOMAIN]

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, **kw) as response:
            if response.status == 204:
                return 204, None
            return response.status, await response.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = await self.call(method, path, body)
        assert got == status, answer
        return answer

    async def register(self, fake: FakeComfy, name: str, **body: Any) -> dict[str, Any]:
        server: dict[str, Any] = await self.ok(
            "POST", SERVERS, {"name": name, "url": fake.url, **body}, status=201
        )
        return server

    async def state_of(self, server: str, *states: str) -> dict[str, Any]:
        """Wait until the server is in one of ``states``; its description."""

        async def check() -> dict[str, Any] | None:
            view: dict[str, Any] = await self.ok("GET", f"{SERVERS}/{server}")
            return view if view["state"] in states else None

        found: dict[str, Any] = await eventually(check, f"{server} in {states}")
        return found


@asynccontextmanager
async def session(
    easel: Easel, name: str = "comfy", params: dict[str, Any] | None = None
) -> AsyncIterator[Client]:
    """A client attached to a new ``all`` session on the pipeline ``name``."""
    created = await easel.ok(
        "POST", "/api/v1/sessions", {"pipeline": name, "drain": "all", "params": params or {}}, 201
    )
    client = await Client.connect(
        easel.url, token=created["token"], session=created["id"], http=easel.http
    )
    try:
        yield client
    finally:
        await client.close()


async def ready(easel: Easel, *names: str) -> None:
    """Wait until the fleet may send frames to each server (state and catalog known)."""

    async def check() -> bool:
        return all(easel.domain.fleet.find(name).ready for name in names)

    await eventually(check, f"{names} ready")


SERVERS = "/api/v1/comfyui/servers"
FAST = {
    "comfy_health_interval": 0.1,
    "comfy_reconnect_max": 0.2,
    "job_reconcile_interval": 0.2,
    "job_lease": 3.0,
    "pipelines": "passthrough",
}
EaselFactory = Callable[..., Awaitable[Easel]]


@pytest.fixture
async def easel_factory(
    easel_server: ServerStarter, tmp_path: Path, migrated_sqlite: Path
) -> AsyncIterator[EaselFactory]:
    """Start Easel apps (fast health checks, short leases) on ``tmp_path/data``."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(**overrides: Any) -> Easel:
        settings = Settings(data_dir=tmp_path / "data", **{**FAST, **overrides})
        seed_sqlite(settings, migrated_sqlite)
        server = await easel_server(create_app(settings, announce=lambda _: None))
        key_file = settings.data_dir / ADMIN_KEY_FILE  # the admin key of the first start
        http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key_file.read_text().strip()}"}
            if key_file.exists()  # not with auth off
            else {}
        )
        sessions.append(http)
        return Easel(server, http, sessions)

    yield make
    for http in sessions:
        await http.close()


@pytest.fixture
async def easel(easel_factory: EaselFactory) -> Easel:
    return await easel_factory()


@pytest.fixture
async def with_fake(easel_factory: EaselFactory, fake: FakeComfy) -> Easel:
    """An Easel with the fake registered as ``one`` and ready."""
    easel = await easel_factory()
    await easel.register(fake, "one")
    await ready(easel, "one")
    return easel


JOBS = "/api/v1/jobs"
ENDED = ("succeeded", "failed", "cancelled")


async def submit(easel: Easel, workflow: dict[str, Any], **body: Any) -> dict[str, Any]:
    job: dict[str, Any] = await easel.ok("POST", JOBS, {"workflow": workflow, **body}, status=201)
    return job


async def ended(easel: Easel, job_id: str, seconds: float = 30.0) -> dict[str, Any]:
    """Wait until the job has ended; its description."""

    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        job: dict[str, Any] = await easel.ok("GET", f"{JOBS}/{job_id}")
        last.update(job)
        return job if job["status"] in ENDED else None

    try:
        found: dict[str, Any] = await eventually(check, f"job {job_id} ended", seconds)
    except AssertionError:
        last.pop("workflow", None)
        raise AssertionError(f"job {job_id} never ended: {last}") from None
    return found


async def status_of(easel: Easel, job_id: str, *states: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job: dict[str, Any] = await easel.ok("GET", f"{JOBS}/{job_id}")
        return job if job["status"] in states else None

    found: dict[str, Any] = await eventually(check, f"job {job_id} in {states}")
    return found


@pytest.fixture
async def three_fakes(tmp_path: Path) -> AsyncIterator[list[FakeComfy]]:
    """Three fakes with the same checkpoint, in separate directories."""
    models = {"checkpoints": [CHECKPOINT]}
    async with (
        running_fake(FakeConfig(base_dir=tmp_path / "f0", models=models)) as a,
        running_fake(FakeConfig(base_dir=tmp_path / "f1", models=models)) as b,
        running_fake(FakeConfig(base_dir=tmp_path / "f2", models=models)) as c,
    ):
        yield [a, b, c]


async def exactly_once(easel: Easel, job_ids: list[str], seconds: float = 60.0) -> list[Any]:
    """Every job ended succeeded with one output of its own, and the store holds no
    other output media; the jobs' descriptions."""
    done = [await ended(easel, job_id, seconds) for job_id in job_ids]
    assert [job["status"] for job in done] == ["succeeded"] * len(done), [
        (j["status"], j["error"]) for j in done if j["status"] != "succeeded"
    ]
    outputs = [output["media_id"] for job in done for output in job["outputs"]]
    assert len(outputs) == len(done)
    assert len(set(outputs)) == len(outputs)
    media = await easel.server.app[STORE].media.list(limit=500)
    assert sorted(m.id for m in media.items if m.content_type == "image/png") == sorted(outputs)
    return done
