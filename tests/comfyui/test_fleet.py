"""Registered servers: supervised actors with a state machine, one socket each that
reconnects, health and catalog, disable/enable/delete, restored after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.comfyui.client import ComfyClient
from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.comfyui.conftest import (
    CHECKPOINT,
    SERVERS,
    Easel,
    EaselFactory,
    empty_graph,
    eventually,
)


async def sockets(fake: FakeComfy) -> list[str]:
    return list(fake.describe()["sockets"])


async def test_a_registered_server_connects_and_reports_health_and_models(
    easel: Easel, fake: FakeComfy
) -> None:
    created = await easel.register(fake, "gpu-1", max_in_flight=2, tags=["sd15"])
    assert (created["name"], created["max_in_flight"], created["tags"]) == ("gpu-1", 2, ["sd15"])
    idle = await easel.state_of("gpu-1", "idle")
    assert idle["health"]["comfyui_version"] == "0.28.1"
    assert idle["health"]["devices"][0]["type"] == "cpu"
    [socket] = await sockets(fake)
    assert socket == f"easel-{easel.domain.fleet.node_id}-{created['id']}"

    async def models() -> Any:
        found = await easel.ok("GET", f"{SERVERS}/{created['id']}/models")
        return found if found["fetched_at"] else None

    catalog = await eventually(models, "the catalog")
    assert catalog["models"] == {"checkpoints": [CHECKPOINT]}
    assert {"LoadImage", "KSampler", "SaveImage"} <= set(catalog["node_types"])
    listing = await easel.ok("GET", SERVERS)
    assert [s["id"] for s in listing["items"]] == [created["id"]]


async def test_a_server_with_a_queue_is_busy_then_idle(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    fake.hang()
    client = ComfyClient(fake.url)
    try:
        await client.submit(empty_graph())
        busy = await easel.state_of("gpu", "busy")
        assert busy["health"]["queue_remaining"] == 1
        fake.hang(False)
        await easel.state_of("gpu", "idle")
    finally:
        await client.close()


async def test_a_dropped_socket_reconnects(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    first = await easel.state_of("gpu", "idle")
    assert first["health"]["connects"] == 1
    await fake.drop_websockets()

    async def reconnected() -> Any:
        view = await easel.ok("GET", f"{SERVERS}/gpu")
        return view["health"]["connects"] == 2 and view["state"] == "idle"

    await eventually(reconnected, "a second connection")
    assert len(await sockets(fake)) == 1


async def test_a_dead_server_is_unhealthy_until_it_comes_back(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    fake.die()
    down = await easel.state_of("gpu", "unhealthy")
    assert down["health"]["error"]
    await fake.restart()
    back = await easel.state_of("gpu", "idle")
    assert back["health"]["error"] is None


async def test_disable_closes_the_socket_and_enable_reopens_it(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    disabled = await easel.ok("POST", f"{SERVERS}/gpu/disable")
    assert disabled["state"] == "disabled"
    await eventually(lambda: _none(sockets(fake)), "the socket closed")
    assert (await easel.ok("GET", f"{SERVERS}/gpu"))["state"] == "disabled"
    await easel.ok("POST", f"{SERVERS}/gpu/enable")
    await easel.state_of("gpu", "idle")


async def _none(found: Any) -> bool:
    return not await found


async def test_servers_are_restored_after_a_restart(
    easel_factory: EaselFactory, tmp_path: Path
) -> None:
    async with (
        running_fake(FakeConfig(base_dir=tmp_path / "a")) as a,
        running_fake(FakeConfig(base_dir=tmp_path / "b")) as b,
    ):
        first = await easel_factory()
        await first.register(a, "a", tags=["x"])
        await first.register(b, "b")
        await first.ok("POST", f"{SERVERS}/b/disable")
        await first.server.close()
        second = await easel_factory()
        restored = await second.state_of("a", "idle")
        assert restored["tags"] == ["x"]
        assert (await second.ok("GET", f"{SERVERS}/b"))["state"] == "disabled"


async def test_register_refuses_duplicates_and_bad_urls(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    status, problem = await easel.call("POST", SERVERS, {"name": "gpu", "url": "http://other"})
    assert (status, problem["code"]) == (409, "conflict")
    status, problem = await easel.call("POST", SERVERS, {"name": "x", "url": "ftp://x"})
    assert (status, problem["code"]) == (422, "invalid")
    status, problem = await easel.call("GET", f"{SERVERS}/nope")
    assert (status, problem["code"]) == (404, "not_found")


async def test_a_deleted_server_is_gone(easel: Easel, fake: FakeComfy) -> None:
    created = await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    assert await easel.ok("DELETE", f"{SERVERS}/gpu", status=204) is None
    assert (await easel.call("GET", f"{SERVERS}/{created['id']}"))[0] == 404
    assert (await easel.ok("GET", SERVERS))["items"] == []
    await eventually(lambda: _none(sockets(fake)), "the socket closed")
    again = await easel.register(fake, "gpu")
    assert again["id"] != created["id"]


async def test_a_crashed_server_actor_is_restarted_by_its_supervisor(
    easel: Easel, fake: FakeComfy
) -> None:
    from actors.comfyui.server import _Crashed

    created = await easel.register(fake, "gpu")
    await easel.state_of("gpu", "idle")
    ref = easel.domain.fleet._refs[created["id"]]
    assert ref._cell.incarnation == 1
    ref.tell(_Crashed(RuntimeError("boom")))

    async def restarted() -> Any:
        view = await easel.ok("GET", f"{SERVERS}/gpu")
        return ref._cell.incarnation == 2 and view["state"] == "idle"

    await eventually(restarted, "a new incarnation connected")
    assert len(await sockets(fake)) == 1
