"""The queue: priority order, one prompt at a time, delete and clear, and the jobs
API's view of it. A hung fake keeps the first prompt running while others wait."""

from __future__ import annotations

import asyncio

import aiohttp

from ops.fakecomfy import FakeComfy
from tests.support.fakecomfy import (
    blur_graph,
    get_json,
    history_entry,
    invert_graph,
    png,
    submit,
    upload,
)


async def wait_running(http: aiohttp.ClientSession, fake: FakeComfy, prompt_id: str) -> None:
    for _ in range(500):
        queue = await get_json(http, fake.url + "/queue")
        if [item[1] for item in queue["queue_running"]] == [prompt_id]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{prompt_id} never started")


async def test_priority_order_and_queue_control(
    fake: FakeComfy, http: aiohttp.ClientSession
) -> None:
    fake.hang()
    first = await submit(http, fake.url, blur_graph(prefix="a"))
    await wait_running(http, fake, first)
    later = await submit(http, fake.url, blur_graph(prefix="b"))
    front = await submit(http, fake.url, blur_graph(prefix="c"), front=True)
    urgent = await submit(http, fake.url, blur_graph(prefix="d"), number=-100)
    spare = await submit(http, fake.url, blur_graph(prefix="e"))
    queue = await get_json(http, fake.url + "/queue")
    running = queue["queue_running"]
    assert [item[1] for item in running] == [first]
    assert len(running[0]) == 5
    assert running[0][0] == 0
    assert running[0][4] == ["9"]
    assert [item[1] for item in queue["queue_pending"]] == [urgent, front, later, spare]
    assert [item[0] for item in queue["queue_pending"]] == [-100.0, -2, 1, 3]
    assert await get_json(http, fake.url + "/prompt") == {"exec_info": {"queue_remaining": 5}}
    # Deleting removes pending prompts only; unknown ids are ignored.
    delete = {"delete": [later, first, "no-such-id"]}
    async with http.post(fake.url + "/queue", json=delete) as response:
        assert response.status == 200
        assert await response.read() == b""
    queue = await get_json(http, fake.url + "/queue")
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[1] for item in queue["queue_pending"]] == [urgent, front, spare]
    assert await get_json(http, f"{fake.url}/history/{later}") == {}
    async with http.post(fake.url + "/queue", json={"clear": True}) as response:
        assert response.status == 200
    queue = await get_json(http, fake.url + "/queue")
    assert (len(queue["queue_running"]), queue["queue_pending"]) == (1, [])
    fake.hang(False)
    assert (await history_entry(http, fake.url, first))["status"]["status_str"] == "success"
    assert list(await get_json(http, fake.url + "/history")) == [first]


async def test_the_jobs_api(fake: FakeComfy, http: aiohttp.ClientSession) -> None:
    await upload(http, fake.url, b"junk", name="bad.png")
    await upload(http, fake.url, png())
    done = await submit(http, fake.url, invert_graph())
    failed = await submit(http, fake.url, invert_graph("bad.png"))
    await history_entry(http, fake.url, failed)
    fake.hang()
    running = await submit(http, fake.url, blur_graph())
    await wait_running(http, fake, running)
    pending = await submit(http, fake.url, blur_graph(prefix="p"))
    listing = await get_json(http, fake.url + "/api/jobs")
    by_id = {job["id"]: job for job in listing["jobs"]}
    assert {by_id[i]["status"] for i in (done, failed, running, pending)} == {
        "completed",
        "failed",
        "in_progress",
        "pending",
    }
    assert by_id[done]["outputs_count"] == 1
    assert by_id[done]["preview_output"] == {
        "filename": "invert_00001_.png",
        "subfolder": "peer",
        "type": "output",
        "nodeId": "3",
        "mediaType": "images",
    }
    assert listing["pagination"] == {"offset": 0, "limit": None, "total": 4, "has_more": False}
    page = await get_json(http, fake.url + "/api/jobs", status="completed,failed", limit=1)
    assert page["pagination"] == {"offset": 0, "limit": 1, "total": 2, "has_more": True}
    async with http.get(fake.url + "/api/jobs", params={"status": "bogus"}) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith("Invalid status value(s): bogus.")
    detail = await get_json(http, f"{fake.url}/api/jobs/{failed}")
    assert detail["execution_error"]["exception_type"] == "PIL.UnidentifiedImageError"
    assert detail["execution_status"]["status_str"] == "error"
    assert detail["workflow"]["prompt"]["1"]["inputs"]["image"] == "bad.png"
    async with http.get(f"{fake.url}/api/jobs/216c4712-3dd1-4632-84d0-9df3923483fb") as response:
        assert (response.status, await response.json()) == (404, {"error": "Job not found"})
    body = {"job_ids": ["not-a-uuid"]}
    async with http.post(fake.url + "/api/jobs/cancel", json=body) as response:
        assert response.status == 400
        assert await response.json() == {
            "error": "job_ids contains invalid id(s)",
            "invalid_ids": ["not-a-uuid"],
        }
    for job, cancelled in [(pending, True), (done, False), (pending, False)]:
        async with http.post(f"{fake.url}/api/jobs/{job}/cancel") as response:
            assert await response.json() == {"cancelled": cancelled}
    async with http.post(f"{fake.url}/api/jobs/{running}/cancel") as response:
        assert await response.json() == {"cancelled": True}
    fake.hang(False)
    await history_entry(http, fake.url, running)
    assert (await get_json(http, f"{fake.url}/api/jobs/{running}"))["status"] == "cancelled"
