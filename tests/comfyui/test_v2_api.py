"""Comfy API v2 over raw HTTP against a real Easel with one fake ComfyUI: every
rejection's status and ``error.code``, and every success body checked against the
SDK's low-level models (``comfy_low.models``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from blake3 import blake3
from comfy_low.models import Asset, Job, JobWorkflowResponse

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    Easel,
    EaselFactory,
    empty_graph,
    eventually,
    invert_graph,
    png,
    ready,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

V2 = "/api/v2"
JOBS = V2 + "/jobs"
ASSETS = V2 + "/assets"
TERMINAL = ("succeeded", "canceled", "failed", "expired")


async def raw(client: Easel, method: str, path: str, **kw: Any) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body (or None) and headers of one request."""
    async with client.http.request(method, client.url + path, **kw) as response:
        data = await response.read()
        body: Any = None
        if data:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = data
        return response.status, body, dict(response.headers)


def rejected(answer: tuple[int, Any, dict[str, str]], status: int, code: str) -> dict[str, Any]:
    """Assert the answer is the v2 error envelope with ``status`` and ``code``."""
    got, body, _ = answer
    assert got == status, (got, body)
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def b3(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def form(data: bytes, name: str, expected: str | None = None) -> aiohttp.FormData:
    sent = aiohttp.FormData()
    sent.add_field("content_type", "image/png")
    sent.add_field("file_path", name)
    if expected is not None:
        sent.add_field("expected_hash", expected)
    sent.add_field("file", data, filename=name, content_type="image/png")
    return sent


async def upload(client: Easel, data: bytes, name: str, status: int = 201) -> dict[str, Any]:
    got, body, _ = await raw(client, "POST", ASSETS, data=form(data, name, b3(data)))
    assert got == status, body
    Asset.model_validate(body)
    result: dict[str, Any] = body
    return result


async def submit(client: Easel, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    got, answer, _ = await raw(client, "POST", JOBS, json=body, headers=headers)
    assert got == 201, answer
    Job.model_validate(answer)
    job: dict[str, Any] = answer
    return job


async def get_job(client: Easel, job_id: str) -> dict[str, Any]:
    got, body, _ = await raw(client, "GET", f"{JOBS}/{job_id}")
    assert got == 200, body
    Job.model_validate(body)
    job: dict[str, Any] = body
    return job


async def v2_status(client: Easel, job_id: str, *states: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(client, job_id)
        return job if job["status"] in states else None

    found: dict[str, Any] = await eventually(check, f"job {job_id} in {states}", 30)
    return found


async def test_asset_rejections_dedup_isolation_and_ranges(with_fake: Easel) -> None:
    me, other = await with_fake.client("me"), await with_fake.client("other")
    data = png((1, 2, 3), size=(16, 16))
    rejected(
        await raw(me, "POST", ASSETS, data=form(data, "a.png", "blake3:" + "0" * 64)),
        409,
        "hash_mismatch",
    )
    first = await upload(me, data, "a.png", 201)
    assert first["created_new"] is True
    assert first["hash"] == b3(data)
    again = await upload(me, data, "a.png", 200)
    assert again["created_new"] is False
    assert again["id"] != first["id"]

    hex_digest = b3(data).removeprefix("blake3:")
    got, _, _ = await raw(me, "HEAD", f"{ASSETS}/by-hash/blake3:{hex_digest}")
    assert got == 200
    theirs = png((200, 1, 1), size=(16, 16))
    await upload(other, theirs, "theirs.png", 201)
    got, _, _ = await raw(me, "HEAD", f"{ASSETS}/by-hash/{b3(theirs)}")
    assert got == 404
    rejected(
        await raw(me, "POST", f"{ASSETS}/from-hash", json={"hash": b3(theirs), "file_path": "x"}),
        404,
        "blob_not_found",
    )
    got, same, _ = await raw(
        me, "POST", f"{ASSETS}/from-hash", json={"hash": b3(data), "file_path": "a.png"}
    )
    assert got == 200, same
    Asset.model_validate(same)
    assert same["id"] in (first["id"], again["id"])

    got, body, _ = await raw(me, "GET", f"{ASSETS}/{first['id']}")
    assert got == 200, body
    Asset.model_validate(body)
    async with me.http.get(
        me.url + f"{ASSETS}/{first['id']}/content", headers={"Range": "bytes=0-9"}
    ) as response:
        assert response.status == 206
        assert await response.read() == data[:10]
    async with me.http.get(
        me.url + f"{ASSETS}/{first['id']}/content", headers={"Range": "bytes=999999-"}
    ) as response:
        assert response.status == 416
    got, _, _ = await raw(other, "GET", f"{ASSETS}/{first['id']}")
    assert got == 404

    got, _, _ = await raw(me, "DELETE", f"{ASSETS}/{first['id']}")
    assert got == 204
    rejected(await raw(me, "DELETE", f"{ASSETS}/{first['id']}"), 404, "not_found")


async def test_a_jobs_output_asset_is_in_use(with_fake: Easel) -> None:
    me = await with_fake.client("me")
    job = await submit(me, {"workflow": empty_graph()})
    done = await v2_status(me, job["id"], *TERMINAL)
    assert done["status"] == "succeeded", done
    assert done["outputs"]
    output_id = done["outputs"][0]["id"]
    got, body, _ = await raw(me, "GET", f"{ASSETS}/{output_id}")
    assert got == 200, body
    Asset.model_validate(body)
    rejected(await raw(me, "DELETE", f"{ASSETS}/{output_id}"), 409, "asset_in_use")


async def test_submit_rejections(with_fake: Easel) -> None:
    me = await with_fake.client("me")
    job = await submit(me, {"workflow": empty_graph()}, **{"Idempotency-Key": "k-1"})
    assert job["status"] in ("queued", "running", "succeeded")
    rejected(
        await raw(
            me, "POST", JOBS, json={"workflow": empty_graph()}, headers={"Idempotency-Key": "k-1"}
        ),
        422,
        "idempotency_key_reuse",
    )
    ui = {"workflow": {"nodes": [], "links": [], "last_node_id": 0, "version": 0.4}}
    rejected(await raw(me, "POST", JOBS, json=ui), 422, "workflow_format_ui")

    unknown = {"5": {"class_type": "NoSuchNode", "inputs": {}}} | empty_graph()
    error = rejected(
        await raw(me, "POST", JOBS, json={"workflow": unknown}), 422, "invalid_workflow"
    )
    assert "5" in (error["details"] or {}).get("node_errors", {}), error

    dangling = empty_graph()
    dangling["9"]["inputs"]["images"] = ["42", 0]
    rejected(await raw(me, "POST", JOBS, json={"workflow": dangling}), 422, "invalid_workflow")

    ghost = {"__type": "core/ASSET", "info": {"id": "nosuchasset"}}
    error = rejected(
        await raw(me, "POST", JOBS, json={"workflow": invert_graph(image=ghost)}),  # type: ignore[arg-type]
        422,
        "missing_asset",
    )
    assert "nosuchasset" in (error["details"] or {}).get("missing_ids", []), error

    too_many = {f"k{i}": "v" for i in range(17)}
    for metadata in (too_many, {"bad key!": "v"}, {"n": 1}):
        body = {"workflow": empty_graph(), "metadata": metadata}
        rejected(await raw(me, "POST", JOBS, json=body), 422, "metadata_invalid")


async def test_list_and_auth_rejections(with_fake: Easel) -> None:
    me = await with_fake.client("me")
    four = {f"metadata[k{i}]": "v" for i in range(4)}
    rejected(await raw(me, "GET", JOBS, params=four), 400, "invalid_metadata_filter")
    rejected(await raw(me, "GET", JOBS, params={"cursor": "!!not-a-cursor"}), 400, "invalid_cursor")

    async with aiohttp.ClientSession() as anonymous:
        for headers in ({}, {"Authorization": "Bearer nosuchkey"}):
            async with anonymous.get(me.url + JOBS, headers=headers) as response:
                body = await response.json(content_type=None)
                rejected((response.status, body, {}), 401, "unauthorized")
    made = await with_fake.ok("POST", "/api/v1/keys", {"name": "m", "role": "metrics"}, 201)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {made['token']}"}) as metrics,
        metrics.get(me.url + JOBS) as response,
    ):
        body = await response.json(content_type=None)
        rejected((response.status, body, {}), 403, "forbidden")


async def test_another_keys_job_is_not_found(with_fake: Easel) -> None:
    me, other = await with_fake.client("me"), await with_fake.client("other")
    job = await submit(me, {"workflow": empty_graph()})
    for method, suffix in (
        ("GET", ""),
        ("POST", "/cancel"),
        ("GET", "/events"),
        ("GET", "/workflow"),
    ):
        rejected(await raw(other, method, f"{JOBS}/{job['id']}{suffix}"), 404, "not_found")
    got, body, _ = await raw(me, "GET", f"{JOBS}/{job['id']}/workflow")
    assert got == 200, body
    JobWorkflowResponse.model_validate(body)


async def test_queue_full_does_not_consume_the_idempotency_key(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory(max_queued_jobs_per_key=1)
    await easel.register(fake, "one")
    await ready(easel, "one")
    fake.hang()
    me = await easel.client("me")
    first = await submit(me, {"workflow": empty_graph()})
    answer = await raw(
        me, "POST", JOBS, json={"workflow": empty_graph()}, headers={"Idempotency-Key": "again"}
    )
    rejected(answer, 429, "queue_full")
    assert int(answer[2]["Retry-After"]) >= 1, answer[2]
    got, body, _ = await raw(me, "POST", f"{JOBS}/{first['id']}/cancel")
    assert got == 200, body
    fake.hang(False)
    await v2_status(me, first["id"], *TERMINAL)

    async def retried() -> dict[str, Any] | None:
        status, body, _ = await raw(
            me, "POST", JOBS, json={"workflow": empty_graph()}, headers={"Idempotency-Key": "again"}
        )
        if status == 429:
            return None
        assert status == 201, body
        result: dict[str, Any] = body
        return result

    second = await eventually(retried, "the retry with the same key is accepted")
    Job.model_validate(second)
    assert second["id"] != first["id"]


async def test_list_newest_first_filters_and_paging(with_fake: Easel) -> None:
    me = await with_fake.client("me")
    ids = []
    for index in range(7):
        labels = {"batch": "b", "parity": "even" if index % 2 == 0 else "odd", "n": str(index)}
        job = await submit(me, {"workflow": empty_graph(), "metadata": labels})
        assert job["metadata"] == labels
        ids.append(job["id"])
    got, body, _ = await raw(me, "GET", JOBS)
    assert got == 200, body
    assert [item["id"] for item in body["jobs"]] == ids[::-1]
    for item in body["jobs"]:
        assert item["create_time"], item
        assert item["update_time"], item
        assert item["metadata"]["batch"] == "b"
    got, body, _ = await raw(
        me, "GET", JOBS, params={"metadata[parity]": "even", "metadata[batch]": "b"}
    )
    assert got == 200, body
    assert [item["id"] for item in body["jobs"]] == [ids[6], ids[4], ids[2], ids[0]]
    got, body, _ = await raw(
        me, "GET", JOBS, params={"metadata[parity]": "even", "metadata[n]": "1"}
    )
    assert got == 200, body
    assert body["jobs"] == [], body

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        got, page, _ = await raw(me, "GET", JOBS, params=params)
        assert got == 200, page
        assert len(page["jobs"]) <= 3
        seen += [item["id"] for item in page["jobs"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == ids[::-1]


async def test_one_job_two_faces(with_fake: Easel, fake: FakeComfy) -> None:
    me = await with_fake.client("me")
    got, v1, _ = await raw(me, "POST", "/api/v1/jobs", json={"workflow": empty_graph()})
    assert got == 201, v1
    seen = await get_job(me, v1["id"])
    assert seen["id"] == v1["id"]
    v2 = await submit(me, {"workflow": empty_graph()})
    got, back, _ = await raw(me, "GET", f"/api/v1/jobs/{v2['id']}")
    assert got == 200, back
    assert back["id"] == v2["id"], back

    fake.slow(0.2, steps=500)  # runs for long, and an interrupt stops it (a hang would not)
    hung = await submit(me, {"workflow": empty_graph(prefix="easel/hung")})
    await v2_status(me, hung["id"], "running")
    got, body, _ = await raw(me, "POST", f"/api/v1/jobs/{hung['id']}/cancel")
    assert got in (200, 202), body
    done = await v2_status(me, hung["id"], *TERMINAL)
    assert done["status"] == "canceled", done
    got, body, _ = await raw(me, "GET", f"/api/v1/jobs/{hung['id']}")
    assert got == 200, body
    assert body["status"] == "cancelled", body


async def test_cancel_running_and_ended(with_fake: Easel, fake: FakeComfy) -> None:
    me = await with_fake.client("me")
    fake.slow(0.2, steps=500)  # runs for long, and an interrupt stops it (a hang would not)
    job = await submit(me, {"workflow": empty_graph()})
    await v2_status(me, job["id"], "running")
    got, body, _ = await raw(me, "POST", f"{JOBS}/{job['id']}/cancel")
    assert got == 200, body
    Job.model_validate(body)
    assert body["status"] in ("canceling", "canceled"), body
    done = await v2_status(me, job["id"], *TERMINAL)
    assert done["status"] == "canceled", done
    got, body, _ = await raw(me, "POST", f"{JOBS}/{job['id']}/cancel")
    assert got == 200, body
    assert body["status"] == "canceled", body
    Job.model_validate(body)

    fake.slow(0.0)
    ok = await submit(me, {"workflow": empty_graph()})
    await v2_status(me, ok["id"], "succeeded")
    got, body, _ = await raw(me, "POST", f"{JOBS}/{ok['id']}/cancel")
    assert got == 200, body
    assert body["status"] == "succeeded", body
    Job.model_validate(body)


async def test_links_follow_forwarded_headers(with_fake: Easel) -> None:
    me = await with_fake.client("me")
    job = await submit(me, {"workflow": empty_graph()})
    path = f"{JOBS}/{job['id']}"
    cases = [
        (
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "easel.example:8443"},
            "https://easel.example:8443" + path,
        ),
        ({"Forwarded": "proto=https;host=public.example"}, "https://public.example" + path),
        ({"X-Forwarded-Host": "evil.com/path?x"}, me.url + path),
    ]
    for headers, expected in cases:
        got, body, _ = await raw(me, "GET", path, headers=headers)
        assert got == 200, body
        Job.model_validate(body)
        assert body["urls"]["self"] == expected, (headers, body["urls"])
        assert body["urls"]["self"].startswith(expected)


async def sse(client: Easel, job_id: str, **headers: str) -> list[dict[str, str]]:
    """The events of a stream (read to its end) as ``{"id", "event", "data"}``."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    timeout = aiohttp.ClientTimeout(total=60)
    async with client.http.get(
        client.url + f"{JOBS}/{job_id}/events",
        headers={"Accept": "text/event-stream", **headers},
        timeout=timeout,
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async for line_bytes in response.content:
            line = line_bytes.decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    events.append(current)
                current = {}
                continue
            name, _, value = line.partition(":")
            current[name] = value.removeprefix(" ")
    if current:
        events.append(current)
    return events


async def test_events_have_ids_outputs_first_and_replay(with_fake: Easel, fake: FakeComfy) -> None:
    me = await with_fake.client("me")
    fake.slow(0.05, steps=3)
    job = await submit(me, {"workflow": empty_graph()})
    live = await asyncio.wait_for(sse(me, job["id"]), 60)
    assert live, live
    assert all("id" in event for event in live), live
    assert live[-1]["event"] == "status"
    assert '"succeeded"' in live[-1]["data"], live[-1]

    await v2_status(me, job["id"], "succeeded")
    ended = await asyncio.wait_for(sse(me, job["id"]), 60)
    kinds = [event["event"] for event in ended]
    assert all("id" in event for event in ended), ended
    assert "output" in kinds, kinds
    assert kinds[-1] == "status", kinds
    assert all(kind == "output" for kind in kinds[kinds.index("output") : -1]), kinds

    replayed = await asyncio.wait_for(sse(me, job["id"], **{"Last-Event-ID": "0"}), 60)
    statuses = [event["data"] for event in replayed if event["event"] == "status"]
    assert len(statuses) >= 3, replayed
    assert '"queued"' in statuses[0], statuses
    assert any('"running"' in status for status in statuses[1:-1]), statuses
    assert '"succeeded"' in statuses[-1], statuses


async def test_what_is_refused_before_a_route_runs_has_the_envelope_too(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory(max_body=4096)
    await easel.register(fake, "one")
    client = await easel.client("app")
    big = {"workflow": {"1": {"class_type": "SaveImage", "inputs": {"x": "a" * 8000}}}}
    rejected(await raw(client, "POST", JOBS, json=big), 413, "payload_too_large")
    foreign = {"Origin": "https://evil.example"}
    rejected(await raw(client, "POST", JOBS, json=big, headers=foreign), 403, "forbidden")
    extra = form(png(), "x.png")
    extra.add_field("surprise", "1")
    rejected(await raw(client, "POST", ASSETS, data=extra), 400, "invalid_request")


async def test_a_long_idempotency_key_and_an_input_in_use(
    with_fake: Easel, fake: FakeComfy
) -> None:
    client = await with_fake.client("app")
    key = "k" * 255  # the SDK allows 255 characters
    fake.hang()
    asset = await upload(client, png((1, 2, 3)), "held.png")
    job = await submit(
        client, {"workflow": invert_graph(image="held.png")}, **{"Idempotency-Key": key}
    )
    again = await raw(
        client, "POST", JOBS, json={"workflow": empty_graph()}, headers={"Idempotency-Key": key}
    )
    rejected(again, 422, "idempotency_key_reuse")
    # the job that takes the asset as its input has not ended: the asset is in use
    rejected(await raw(client, "DELETE", f"{ASSETS}/{asset['id']}"), 409, "asset_in_use")
    status, _, _ = await raw(client, "POST", f"{JOBS}/{job['id']}/cancel")
    assert status == 200
    fake.hang(False)
    await v2_status(client, job["id"], *TERMINAL)
    status, _, _ = await raw(client, "DELETE", f"{ASSETS}/{asset['id']}")
    assert status == 204


async def test_an_odd_last_event_id_is_ignored(with_fake: Easel) -> None:
    client = await with_fake.client("app")
    job = await submit(client, {"workflow": empty_graph()})
    await v2_status(client, job["id"], "succeeded")
    events = await sse(client, job["id"], **{"Last-Event-ID": "²"})
    assert events[-1]["event"] == "status"
    assert '"succeeded"' in events[-1]["data"]
