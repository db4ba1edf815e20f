"""Jobs are their owners': a client key submits, sees, cancels and watches only its own
jobs (another key's is 404, as one that does not exist), reads its jobs' outputs,
names only its own media in a workflow and has a bounded number of jobs unfinished.
Admin keys see every job."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    JOBS,
    Easel,
    EaselFactory,
    empty_graph,
    ended,
    invert_graph,
    png,
    submit,
    txt2img_graph,
)


async def test_comfyui_servers_stay_admin_only(easel: Easel, fake: FakeComfy) -> None:
    server = await easel.register(fake, "gpu")
    alice = await easel.client("alice")
    body = {"name": "mine", "url": "http://127.0.0.1:9"}
    for method, path, sent in (
        ("GET", "/api/v1/comfyui/servers", None),
        ("POST", "/api/v1/comfyui/servers", body),
        ("GET", f"/api/v1/comfyui/servers/{server['id']}", None),
        ("GET", f"/api/v1/comfyui/servers/{server['id']}/models", None),
        ("POST", f"/api/v1/comfyui/servers/{server['id']}/disable", None),
        ("DELETE", f"/api/v1/comfyui/servers/{server['id']}", None),
    ):
        status, problem = await alice.call(method, path, sent)
        assert (status, problem["code"]) == (403, "forbidden"), path


def _not_found(answer: tuple[int, Any]) -> bool:
    status, body = answer
    return status == 404 and body["code"] == "not_found"


async def _upload(easel: Easel, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="a.png", content_type="image/png")
    async with easel.http.post(f"{easel.url}/api/v1/media", data=form) as answer:
        assert answer.status == 201
        made: dict[str, Any] = await answer.json()
    return str(made["id"])


async def test_a_client_sees_cancels_and_watches_only_its_own_jobs(easel: Easel) -> None:
    alice, bob = await easel.client("alice"), await easel.client("bob")
    mine = await submit(alice, empty_graph())
    theirs = await submit(bob, empty_graph())

    assert (await alice.ok("GET", f"{JOBS}/{mine['id']}"))["id"] == mine["id"]
    for path in (f"{JOBS}/{theirs['id']}", f"{JOBS}/{theirs['id']}/events", f"{JOBS}/nope"):
        assert _not_found(await alice.call("GET", path)), path
    assert _not_found(await alice.call("POST", f"{JOBS}/{theirs['id']}/cancel"))
    assert (await bob.ok("GET", f"{JOBS}/{theirs['id']}"))["status"] == "queued"

    page = await alice.ok("GET", JOBS)
    assert ([j["id"] for j in page["items"]], page["total"]) == ([mine["id"]], 1)
    everyone = await easel.ok("GET", JOBS)
    assert sorted(j["id"] for j in everyone["items"]) == sorted([mine["id"], theirs["id"]])
    assert (await easel.ok("GET", f"{JOBS}/{mine['id']}"))["id"] == mine["id"]

    assert (await alice.ok("POST", f"{JOBS}/{mine['id']}/cancel"))["status"] == "cancelled"
    async with alice.http.get(f"{alice.url}{JOBS}/{mine['id']}/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert b"event: cancelled" in await response.read()
    assert (await easel.ok("POST", f"{JOBS}/{theirs['id']}/cancel"))["status"] == "cancelled"


async def test_a_batch_is_its_submitters(easel: Easel) -> None:
    alice, bob = await easel.client("alice"), await easel.client("bob")
    body = {"workflow": txt2img_graph(), "seeds": [1, 2]}
    batch = await alice.ok("POST", f"{JOBS}/batch", body, status=201)
    ids = [job["id"] for job in batch["items"]]
    assert [j["id"] for j in (await alice.ok("GET", JOBS))["items"]] == ids
    assert (await bob.ok("GET", JOBS))["total"] == 0
    for job_id in ids:
        assert _not_found(await bob.call("GET", f"{JOBS}/{job_id}"))


async def test_idempotency_keys_are_each_keys_own(easel: Easel) -> None:
    alice, bob = await easel.client("alice"), await easel.client("bob")
    body = {"workflow": empty_graph(), "idempotency_key": "order-1"}
    status, first = await alice.call("POST", JOBS, body)
    assert status == 201
    status, other = await bob.call("POST", JOBS, body)
    assert (status, other["id"] != first["id"]) == (201, True)
    status, again = await alice.call("POST", JOBS, body)
    assert (status, again["id"]) == (200, first["id"])


async def test_outputs_belong_to_the_jobs_owner(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    alice, bob = await easel.client("alice"), await easel.client("bob")
    done = await ended(alice, (await submit(alice, empty_graph(size=4)))["id"])
    assert done["status"] == "succeeded", done
    [output] = done["outputs"]
    async with alice.http.get(alice.url + output["url"]) as answer:
        assert (answer.status, answer.content_type) == (200, "image/png")
    assert _not_found(await bob.call("GET", f"{output['url']}/meta"))
    assert (await alice.ok("GET", f"{output['url']}/meta"))["id"] == output["media_id"]


async def test_a_workflow_names_only_its_keys_media(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    alice, bob = await easel.client("alice"), await easel.client("bob")
    hers = await _upload(alice, png((10, 20, 30), (4, 4)))

    status, foreign = await bob.call("POST", JOBS, {"workflow": invert_graph(f"media:{hers}")})
    missing_id = hers[:-1] + ("0" if hers[-1] != "0" else "1")
    _, missing = await bob.call("POST", JOBS, {"workflow": invert_graph(f"media:{missing_id}")})
    assert (status, foreign["code"]) == (422, "invalid")
    assert foreign["detail"].replace(hers, "<id>") == missing["detail"].replace(missing_id, "<id>")
    assert (await bob.ok("GET", JOBS))["total"] == 0
    seeded = invert_graph(f"media:{hers}")
    seeded["1"]["inputs"]["seed"] = 0
    status, problem = await bob.call("POST", f"{JOBS}/batch", {"workflow": seeded, "seeds": [1]})
    assert (status, problem["detail"]) == (422, foreign["detail"])

    done = await ended(alice, (await submit(alice, invert_graph(f"media:{hers}")))["id"])
    assert done["status"] == "succeeded", done
    by_admin = await ended(easel, (await submit(easel, invert_graph(f"media:{hers}")))["id"])
    assert by_admin["status"] == "succeeded", by_admin


async def test_a_keys_unfinished_jobs_are_bounded(easel_factory: EaselFactory) -> None:
    easel = await easel_factory(max_queued_jobs_per_key=3)
    alice, bob = await easel.client("alice"), await easel.client("bob")
    ids = [(await submit(alice, empty_graph()))["id"] for _ in range(3)]

    async with alice.http.post(f"{alice.url}{JOBS}", json={"workflow": empty_graph()}) as answer:
        problem = await answer.json(content_type=None)
        assert (answer.status, problem["code"]) == (503, "overloaded")
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.content_type == "application/problem+json"
    batch = {"workflow": txt2img_graph(), "seeds": [1]}
    assert (await alice.call("POST", f"{JOBS}/batch", batch))[0] == 503
    assert (await alice.ok("GET", JOBS))["total"] == 3

    await submit(bob, empty_graph())  # another key's room is its own
    await submit(easel, empty_graph())  # admin keys are not bounded

    await alice.ok("POST", f"{JOBS}/{ids[0]}/cancel")
    two = {"workflow": txt2img_graph(), "seeds": [1, 2]}
    assert (await alice.call("POST", f"{JOBS}/batch", two))[0] == 503  # every seed counts
    assert (await alice.ok("GET", JOBS))["total"] == 3
    await alice.ok("POST", f"{JOBS}/batch", {**two, "seeds": [1]}, status=201)


async def test_a_retried_submit_at_the_limit_returns_its_job(easel_factory: EaselFactory) -> None:
    easel = await easel_factory(max_queued_jobs_per_key=1)
    alice = await easel.client("alice")
    body = {"workflow": empty_graph(), "idempotency_key": "once"}
    status, first = await alice.call("POST", JOBS, body)
    assert status == 201
    status, again = await alice.call("POST", JOBS, body)
    assert (status, again["id"]) == (200, first["id"])


async def test_concurrent_submits_do_not_pass_the_limit_together(
    easel_factory: EaselFactory,
) -> None:
    easel = await easel_factory(max_queued_jobs_per_key=3)
    alice = await easel.client("alice")
    answers = await asyncio.gather(
        *(alice.call("POST", JOBS, {"workflow": empty_graph()}) for _ in range(8))
    )
    assert sorted(status for status, _ in answers) == [201] * 3 + [503] * 5
    assert (await alice.ok("GET", JOBS))["total"] == 3
