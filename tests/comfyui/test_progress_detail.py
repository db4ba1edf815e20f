"""A running job's progress in detail (nodes done of the nodes to run, the current
node and its steps), its newest preview, and what its outputs say of themselves."""

from __future__ import annotations

from typing import Any

from engine.storage import Job, JobStatus, Store
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    Easel,
    EaselFactory,
    empty_graph,
    ended,
    eventually,
    submit,
    txt2img_graph,
)
from tests.support.fakecomfy import blur_graph
from transport.keys import STORE

DETAIL = {"nodes_done", "nodes_total", "current_node", "current_node_class", "step", "steps"}


def store_of(easel: Easel) -> Store:
    return easel.server.app[STORE]


async def watch_detail(easel: Easel, job_id: str) -> tuple[list[Job], Job]:
    """Every distinct stored state of a job while it runs (bounded polling); the
    snapshots seen running with a detail, and the job once it ended."""
    seen: list[Job] = []

    async def check() -> Job | None:
        job = await store_of(easel).jobs.get(job_id)
        if (
            job.status is JobStatus.RUNNING
            and job.detail
            and (not seen or seen[-1].version != job.version)
        ):
            seen.append(job)
        return (
            job
            if job.status not in (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING)
            else None
        )

    done: Job = await eventually(check, f"job {job_id} ended", 60.0)
    return seen, done


async def test_a_running_graph_reports_nodes_steps_and_overall_progress(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory()
    await easel.register(fake, "gpu")
    fake.slow(0.05, steps=8)  # every node takes 8 steps of 50 ms
    graph = blur_graph(blurs=3, prefix="detail")  # 5 nodes
    job = await submit(easel, graph)
    seen, done = await watch_detail(easel, job["id"])

    assert done.status is JobStatus.SUCCEEDED
    assert len(seen) >= 3, [s.detail for s in seen]
    for snapshot in seen:
        detail: dict[str, Any] = snapshot.detail
        assert set(detail) == DETAIL
        assert detail["nodes_total"] == 5
        assert 0 <= detail["nodes_done"] <= 5
        node = detail["current_node"]
        if node is not None:
            assert detail["current_node_class"] == graph[node]["class_type"]
        fraction = detail["step"] / detail["steps"] if detail["steps"] else 0.0
        expected = (detail["nodes_done"] + fraction) / detail["nodes_total"]
        assert abs(snapshot.progress - expected) < 1e-9, detail
        assert 0.0 <= snapshot.progress < 1.0
    progress = [snapshot.progress for snapshot in seen]
    assert progress == sorted(progress)  # it only goes forward
    assert len({snapshot.detail["nodes_done"] for snapshot in seen}) >= 2
    assert done.progress == 1.0
    assert done.detail["nodes_done"] == done.detail["nodes_total"] == 5

    # the same graph again but its last node: the server runs only that one
    graph["9"]["inputs"]["filename_prefix"] = "detail-again"
    again = await ended(easel, (await submit(easel, graph))["id"])
    assert again["status"] == "succeeded"
    stored = await store_of(easel).jobs.get(again["id"])
    assert stored.detail["nodes_total"] < 5
    assert stored.detail["nodes_done"] == stored.detail["nodes_total"]
    assert stored.progress == 1.0


async def test_a_running_job_keeps_its_newest_preview_until_it_ends(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory()
    await easel.register(fake, "gpu")
    fake.slow(0.05, steps=8)  # the sampler's steps too
    graph = txt2img_graph(steps=30)
    job = await submit(easel, graph)
    tracker = easel.domain.tracker

    async def previewed() -> tuple[str | None, str, bytes] | None:
        return tracker.live.preview(job["id"])

    node, content_type, image = await eventually(previewed, "a preview")
    assert node == "3"  # the KSampler's, though a bare preview names no prompt
    assert content_type == "image/jpeg"
    assert image[:2] == b"\xff\xd8"
    assert (await ended(easel, job["id"]))["status"] == "succeeded"
    assert tracker.live.preview(job["id"]) is None  # let go with the job
    assert tracker.live.preview("no-such-job") is None


async def test_outputs_say_their_name_type_size_and_hash_and_belong_to_their_job(
    easel: Easel, fake: FakeComfy
) -> None:
    await easel.register(fake, "gpu")
    graph = empty_graph(prefix="named")
    graph["2"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    done = await ended(easel, (await submit(easel, graph))["id"])
    assert done["status"] == "succeeded"
    job = await store_of(easel).jobs.get(done["id"])
    assert [output.node for output in job.outputs] == ["9", "2"]  # saved before previews
    media = store_of(easel).media
    for output in job.outputs:
        record = await media.get(output.media_id)
        assert output.name == record.filename
        assert output.name.endswith(".png")
        assert (output.content_type, output.size) == (record.content_type, record.size)
        assert output.content_type == "image/png"
        assert output.size == len(await media.read(output.media_id)) > 0
        assert output.blake3 is not None
        assert output.blake3 == record.blake3
        assert output.blake3.startswith("blake3:")
        assert record.job_id == job.id
    assert job.outputs[0].name.startswith("named")
    assert sorted(m.id for m in await media.of_job(job.id)) == sorted(
        output.media_id for output in job.outputs
    )
