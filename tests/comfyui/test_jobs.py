"""Durable jobs end to end: submit, outputs as media, idempotency, validation errors,
cancel, model-aware routing, media inputs, batches, listing and progress events."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import transport.rest.jobs as jobs_routes
from actors.comfyui.client import ComfyClient
from ops.fakecomfy import FakeComfy, FakeConfig, running_fake
from tests.comfyui.conftest import (
    CHECKPOINT,
    JOBS,
    Easel,
    empty_graph,
    ended,
    eventually,
    invert_graph,
    png,
    status_of,
    submit,
    txt2img_graph,
)
from transport.keys import STORE


async def test_a_job_runs_and_its_outputs_are_stored_as_media(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    job = await submit(easel, empty_graph(color=0xFF0000, size=4))
    assert (job["status"], job["attempts"]) == ("queued", 0)
    done = await ended(easel, job["id"])
    assert (done["status"], done["attempts"], done["progress"]) == ("succeeded", 1, 1.0)
    assert done["server_id"] == (await easel.ok("GET", "/api/v1/comfyui/servers/gpu"))["id"]
    [output] = done["outputs"]
    assert output["node"] == "9"
    data = await easel.server.app[STORE].media.read(output["media_id"])
    image = Image.open(io.BytesIO(data))
    assert (image.size, image.getpixel((0, 0))) == ((4, 4), (255, 0, 0))
    assert None not in (done["started_at"], done["finished_at"], done["dispatched_at"])


async def test_a_retried_submit_with_the_same_key_returns_the_same_job(
    easel: Easel,
) -> None:
    headers = {"Idempotency-Key": "order-1"}
    status, first = await easel.call("POST", JOBS, {"workflow": empty_graph()}, headers=headers)
    assert status == 201
    status, again = await easel.call("POST", JOBS, {"workflow": empty_graph()}, headers=headers)
    assert (status, again["id"]) == (200, first["id"])
    status, by_field = await easel.call(
        "POST", JOBS, {"workflow": empty_graph(), "idempotency_key": "order-1"}
    )
    assert (status, by_field["id"]) == (200, first["id"])
    assert (await easel.ok("GET", JOBS))["total"] == 1


async def test_a_rejected_workflow_fails_at_once_with_its_node_errors(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    graph = invert_graph()
    graph["2"]["inputs"]["image"] = ["1", 5]
    done = await ended(easel, (await submit(easel, graph))["id"])
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["error"] == "Prompt outputs failed validation"
    [problem] = done["node_errors"]["2"]["errors"]
    assert problem["type"] == "exception_during_inner_validation"


async def test_a_runtime_error_fails_the_job_with_the_node_that_failed(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    client = ComfyClient(fake.url)
    try:
        bad = await client.upload_image(b"not an image", "bad.png")
    finally:
        await client.close()
    done = await ended(easel, (await submit(easel, invert_graph(bad)))["id"])
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert "cannot identify image file" in done["error"]
    assert done["node_errors"]["1"]["class_type"] == "LoadImage"


async def test_an_invalid_body_is_refused(easel: Easel) -> None:
    status, problem = await easel.call("POST", JOBS, {"workflow": {"1": {"inputs": {}}}})
    assert (status, problem["code"]) == (422, "invalid")
    status, problem = await easel.call("POST", JOBS, {"workflow": empty_graph(), "x": 1})
    assert status == 422
    status, problem = await easel.call("GET", f"{JOBS}?status=bogus")
    assert status == 422


async def test_cancel_a_queued_job(easel: Easel) -> None:
    job = await submit(easel, empty_graph())  # no server: it stays queued
    cancelled = await easel.ok("POST", f"{JOBS}/{job['id']}/cancel")
    assert (cancelled["status"], cancelled["attempts"]) == ("cancelled", 0)
    status, problem = await easel.call("POST", f"{JOBS}/{job['id']}/cancel")
    assert (status, problem["code"]) == (409, "conflict")
    status, _ = await easel.call("POST", f"{JOBS}/nope/cancel")
    assert status == 404


async def test_cancel_a_running_job_interrupts_it_on_its_server(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    fake.slow(0.05, steps=200)
    job = await submit(easel, empty_graph())
    running = await status_of(easel, job["id"], "running")
    asked = await easel.ok("POST", f"{JOBS}/{job['id']}/cancel")
    assert asked["cancel_requested"] is True
    done = await ended(easel, job["id"])
    assert (done["status"], done["outputs"]) == ("cancelled", [])
    client = ComfyClient(fake.url)
    try:
        entry = await client.history(running["prompt_id"])
        assert entry is not None
        assert entry["status"]["status_str"] == "error"
    finally:
        await client.close()


async def test_jobs_go_only_to_servers_that_have_their_models(easel: Easel, tmp_path: Path) -> None:
    async with (
        running_fake(FakeConfig(base_dir=tmp_path / "with")) as bare,
        running_fake(
            FakeConfig(base_dir=tmp_path / "bare", models={"checkpoints": [CHECKPOINT]})
        ) as loaded,
    ):
        bare_id = (await easel.register(bare, "bare", max_in_flight=4))["id"]
        loaded_id = (await easel.register(loaded, "loaded", max_in_flight=4))["id"]
        await easel.state_of("bare", "idle")
        await easel.state_of("loaded", "idle")
        models = [await submit(easel, txt2img_graph(seed=s)) for s in range(4)]
        plain = [await submit(easel, empty_graph(color=c)) for c in range(8)]
        missing = await submit(easel, txt2img_graph(checkpoint="nowhere.safetensors"))
        for job in models:
            done = await ended(easel, job["id"])
            assert (done["status"], done["server_id"]) == ("succeeded", loaded_id)
        servers = {(await ended(easel, job["id"]))["server_id"] for job in plain}
        assert servers <= {bare_id, loaded_id}
        assert (await easel.ok("GET", f"{JOBS}/{missing['id']}"))["status"] == "queued"


async def test_a_media_input_is_uploaded_to_the_server(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    media = await easel.server.app[STORE].media.put(png((10, 20, 30), (4, 4)), "image/png")
    done = await ended(easel, (await submit(easel, invert_graph(f"media:{media.id}")))["id"])
    assert done["status"] == "succeeded", done
    [output] = done["outputs"]
    data = await easel.server.app[STORE].media.read(output["media_id"])
    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    assert [abs(got - want) <= 1 for got, want in zip(pixel, (245, 235, 225), strict=True)] == [
        True
    ] * 3
    assert (fake.dirs.input / f"easel-{media.id}.png").exists()
    status, problem = await easel.call("POST", JOBS, {"workflow": invert_graph("media:0")})
    assert (status, problem["code"]) == (422, "invalid")


async def test_a_batch_makes_one_job_per_seed(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu", max_in_flight=3)
    batch = await easel.ok(
        "POST", f"{JOBS}/batch", {"workflow": txt2img_graph(), "seeds": [7, 8, 9]}, status=201
    )
    assert batch["total"] == 3
    seeds = []
    for job in batch["items"]:
        done = await ended(easel, job["id"])
        assert done["status"] == "succeeded"
        seeds.append(done["workflow"]["3"]["inputs"]["seed"])
    assert seeds == [7, 8, 9]
    status, problem = await easel.call(
        "POST", f"{JOBS}/batch", {"workflow": empty_graph(), "seeds": [1]}
    )
    assert (status, problem["code"]) == (422, "invalid")


async def test_jobs_list_by_state_in_pages(easel: Easel) -> None:
    ids = [(await submit(easel, empty_graph(), priority=p))["id"] for p in (3, 1, 2)]
    await easel.ok("POST", f"{JOBS}/{ids[2]}/cancel")
    page = await easel.ok("GET", f"{JOBS}?status=queued&limit=1&offset=1")
    assert (page["total"], [j["id"] for j in page["items"]]) == (2, [ids[0]])
    first = await easel.ok("GET", f"{JOBS}?status=queued&limit=1")
    assert [j["id"] for j in first["items"]] == [ids[1]]
    cancelled = await easel.ok("GET", f"{JOBS}?status=cancelled")
    assert [j["id"] for j in cancelled["items"]] == [ids[2]]


async def test_progress_streams_as_server_sent_events(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    fake.slow(0.1, steps=8)
    job = await submit(easel, empty_graph())
    events: list[tuple[str, dict[str, Any]]] = []
    async with easel.http.get(f"{easel.url}{JOBS}/{job['id']}/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    kinds = [kind for kind, _ in events]
    assert kinds[0] in ("queued", "dispatched")
    assert kinds[-1] == "succeeded"
    assert "running" in kinds
    progress = [data["progress"] for kind, data in events if kind == "running"]
    assert any(0 < p < 1 for p in progress), progress
    assert (await easel.call("GET", f"{JOBS}/nope/events"))[0] == 404


async def test_the_in_flight_cap_holds(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu", max_in_flight=2)
    fake.hang()
    jobs = [await submit(easel, empty_graph(color=c)) for c in range(5)]

    async def two_dispatched() -> bool:
        page = await easel.ok("GET", JOBS)
        active = [j for j in page["items"] if j["status"] in ("dispatched", "running")]
        return len(active) == 2

    async def two_on_the_server() -> bool:
        return bool(fake.describe()["queue_remaining"] == 2)

    await eventually(two_dispatched, "two jobs in flight")
    await eventually(two_on_the_server, "both sent")
    await asyncio.sleep(0.5)  # rounds enough to break the cap, were it not held
    assert fake.describe()["queue_remaining"] == 2
    assert await two_dispatched()
    fake.hang(False)
    for job in jobs:
        assert (await ended(easel, job["id"]))["status"] == "succeeded"


async def test_the_fleet_and_its_jobs_are_measured(easel: Easel, fake: FakeComfy) -> None:
    await easel.register(fake, "gpu")
    done = await ended(easel, (await submit(easel, empty_graph()))["id"])
    assert done["status"] == "succeeded"
    async with easel.http.get(easel.url + "/metrics") as response:
        lines = (await response.text()).splitlines()

    def value(name: str) -> float:
        [found] = [float(line.split()[-1]) for line in lines if line.startswith(name + " ")]
        return found

    assert value('easel_comfyui_servers{state="idle"}') == 1
    assert value('easel_comfyui_queue_remaining{server="gpu"}') == 0
    assert value('easel_jobs_finished_total{state="succeeded"}') == 1
    assert value('easel_job_duration_seconds_count{state="succeeded"}') == 1
    assert value("easel_job_dispatch_latency_seconds_count") == 1
    assert value("easel_job_redispatches_total") == 0


async def test_an_event_stream_whose_client_left_ends_at_its_next_heartbeat(
    easel: Easel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_routes, "HEARTBEAT", 0.2)
    job = await submit(easel, empty_graph())  # no server: it stays queued, nothing changes
    async with easel.http.get(f"{easel.url}{JOBS}/{job['id']}/events") as response:
        assert (await response.content.readline()).startswith(b"id: ")
        assert easel.domain.jobs.watchers(job["id"]) == 1
        async with asyncio.timeout(5):  # quiet, then a comment line: the stream lives
            while await response.content.readline() != b": keep-alive\n":
                pass
    # the client is gone: the next heartbeat finds out, and the stream ends

    async def ended_stream() -> bool:
        return easel.domain.jobs.watchers(job["id"]) == 0

    await eventually(ended_stream, "the stream of a client that left ended")
