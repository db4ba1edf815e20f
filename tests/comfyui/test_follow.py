"""A realtime session following a ComfyUI job: CALL ``job.subscribe``, then EVENT
frames as the job changes (docs/protocol.md, "Following a job")."""

from __future__ import annotations

import asyncio

import pytest

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    EaselFactory,
    ended,
    ready,
    session,
    submit,
    txt2img_graph,
)
from transport.client import Client, Event, ServerError

ENDS = ("job.succeeded", "job.failed", "job.cancelled")


async def until_ended(client: Client) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(60):
        async for event in client.events():
            events.append(event)
            if event.name in ENDS:
                return events
    raise AssertionError(f"the connection closed after {events}")


async def test_a_session_following_a_job_gets_an_event_for_each_change(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory(insecure=True)  # jobs and sessions of no key: one owner
    await easel.register(fake, "gpu-1")
    await ready(easel, "gpu-1")
    fake.slow(0.15, steps=4)  # about 4 s: progress moves several times
    async with session(easel, "passthrough") as client:
        job = await submit(easel, txt2img_graph(steps=4))
        now = await client.call("job.subscribe", {"job": job["id"]})
        again = await client.call("job.subscribe", {"job": job["id"]})  # changes nothing
        events = await until_ended(client)
        finished = await ended(easel, job["id"])
        done = await client.call("job.subscribe", {"job": job["id"]})
        with pytest.raises(TimeoutError):  # 0.3 s of room for an EVENT that must not come
            async with asyncio.timeout(0.3):
                await client.next_event()
    assert now["job"] == again["job"] == job["id"]
    assert now["status"] in ("queued", "dispatched", "running")
    names = [event.name for event in events]
    statuses = [name for name in names if name != "job.progress"]
    assert statuses in (
        ["job.dispatched", "job.running", "job.succeeded"],
        ["job.running", "job.succeeded"],
    )
    assert "job.progress" in names
    assert all(event.data["job"] == job["id"] for event in events)
    progress = [e.data["progress"] for e in events if e.name == "job.progress"]
    assert all(0 < value <= 1 for value in progress)
    assert events[-1].data == done
    assert done == {
        "job": job["id"],
        "status": "succeeded",
        "progress": finished["progress"],
        "attempts": 1,
        "error": None,
        "outputs": [output["media_id"] for output in finished["outputs"]],
    }


@pytest.mark.parametrize(("args", "code"), [({}, "bad_params"), ({"job": "nope"}, "not_found")])
async def test_a_subscribe_without_a_job_of_ones_own_is_refused(
    easel_factory: EaselFactory, args: dict[str, str], code: str
) -> None:
    easel = await easel_factory(insecure=True)
    async with session(easel, "passthrough") as client:
        with pytest.raises(ServerError) as refused:
            await client.call("job.subscribe", args)
    assert refused.value.code == code


async def test_a_session_of_another_key_may_not_follow_a_job(
    easel_factory: EaselFactory,
) -> None:
    easel = await easel_factory()
    job = await submit(easel, txt2img_graph())  # the admin's
    key = await easel.ok("POST", "/api/v1/keys", {"name": "canvas", "role": "client"}, 201)
    auth = {"Authorization": f"Bearer {key['token']}"}
    status, created = await easel.call(
        "POST", "/api/v1/sessions", {"pipeline": "passthrough"}, headers=auth
    )
    assert status == 201, created
    client = await Client.connect(
        easel.url, token=created["token"], session=created["id"], http=easel.http
    )
    try:
        with pytest.raises(ServerError) as refused:
            await client.call("job.subscribe", {"job": job["id"]})
    finally:
        await client.close()
    assert (refused.value.code, refused.value.message) == (
        "not_found",
        f"job {job['id']} not found",
    )


async def test_a_client_key_follows_its_own_job_with_authentication_on(
    easel_factory: EaselFactory,
) -> None:
    easel = await easel_factory()
    mine = await easel.client("canvas")
    job = await submit(mine, txt2img_graph())  # no server: it stays queued
    async with session(mine, "passthrough") as client:
        now = await client.call("job.subscribe", {"job": job["id"]})
    assert (now["job"], now["status"]) == (job["id"], "queued")
