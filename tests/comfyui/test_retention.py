"""The retention sweep: unfinished jobs past their retention end expired (and never
run), ended ones are deleted with their outputs, due media are deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from actors.comfyui.client import ComfyClient
from engine.errors import Conflict, NotFound
from engine.storage import Job, JobStatus, Store
from engine.storage.records import now
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import (
    Easel,
    EaselFactory,
    empty_graph,
    ended,
    eventually,
    png,
    status_of,
    submit,
)
from transport.keys import STORE

SWEEPING = {"retention_sweep_every": 0.1}


def store_of(easel: Easel) -> Store:
    return easel.server.app[STORE]


async def past_retention(easel: Easel, job_id: str) -> None:
    """Move a job's retention deadline into the past (whatever else changes it meanwhile)."""
    jobs = store_of(easel).jobs
    for _ in range(50):
        job = await jobs.get(job_id)
        try:
            await jobs.swap(job, expires_at=now() - timedelta(seconds=1))
            return
        except Conflict:
            continue
    raise AssertionError(f"job {job_id} kept changing")


async def stored_status(easel: Easel, job_id: str, status: JobStatus) -> Job:
    async def check() -> Job | None:
        job = await store_of(easel).jobs.get(job_id)
        return job if job.status is status else None

    found: Job = await eventually(check, f"job {job_id} {status.value}")
    return found


async def gone(easel: Easel, job_id: str) -> bool:
    try:
        await store_of(easel).jobs.get(job_id)
    except NotFound:
        return True
    return False


async def metric(easel: Easel, name: str) -> float:
    async with easel.http.get(easel.url + "/metrics") as response:
        lines = (await response.text()).splitlines()
    found = [float(line.split()[-1]) for line in lines if line.startswith(name + " ")]
    return found[0] if found else 0.0


def media_file(tmp_path: Path, media_id: str) -> Path:
    return tmp_path / "data" / "media" / media_id[-2:] / media_id


async def test_a_queued_job_past_its_retention_ends_expired_and_never_runs(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory(**SWEEPING)
    job = await submit(easel, empty_graph())  # no server yet: it stays queued
    await past_retention(easel, job["id"])
    expired = await stored_status(easel, job["id"], JobStatus.EXPIRED)
    assert expired.error == "its retention ran out before it ended"
    assert expired.finished_at is not None
    assert expired.expires_at is not None
    assert expired.expires_at > now() + timedelta(days=6)  # kept one more retention
    assert (expired.slot, expired.lease_owner, expired.attempts) == (None, None, 0)
    assert [phase.status for phase in expired.history][-1] is JobStatus.EXPIRED
    assert (await easel.ok("GET", f"/api/v1/jobs/{job['id']}"))["status"] == "expired"
    status, _ = await easel.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert status == 409  # expired is an end

    await easel.register(fake, "gpu")
    later = await ended(easel, (await submit(easel, empty_graph(color=0x112233)))["id"])
    assert later["status"] == "succeeded"  # the dispatcher ran rounds with a server ready
    still = await store_of(easel).jobs.get(job["id"])
    assert (still.status, still.attempts, still.prompt_id) == (JobStatus.EXPIRED, 0, None)
    assert fake.describe()["nodes_started"] == 2  # the later job's two nodes, nothing else
    assert await metric(easel, "easel_jobs_expired_total") == 1


async def test_with_a_tiny_retention_a_queued_job_expires_then_is_deleted(
    easel_factory: EaselFactory,
) -> None:
    easel = await easel_factory(job_retention=1, **SWEEPING)
    job = await submit(easel, empty_graph())  # no server: it stays queued

    async def dated() -> Job | None:
        found = await store_of(easel).jobs.get(job["id"])
        return found if found.expires_at is not None else None

    first = await eventually(dated, "the job dated")
    assert first.expires_at == first.created_at + timedelta(seconds=1)
    await stored_status(easel, job["id"], JobStatus.EXPIRED)
    await eventually(lambda: gone(easel, job["id"]), "the expired job deleted")
    assert await metric(easel, 'easel_retention_deleted_total{kind="job"}') == 1


async def test_a_running_job_past_its_retention_ends_expired_and_is_interrupted(
    easel_factory: EaselFactory, fake: FakeComfy
) -> None:
    easel = await easel_factory(**SWEEPING)
    await easel.register(fake, "gpu")
    fake.slow(0.05, steps=200)
    job = await submit(easel, empty_graph())
    running = await status_of(easel, job["id"], "running")
    await past_retention(easel, job["id"])
    expired = await stored_status(easel, job["id"], JobStatus.EXPIRED)
    assert expired.slot is None
    assert expired.lease_owner is None

    client = ComfyClient(fake.url)
    try:

        async def interrupted() -> dict[str, Any] | None:
            entry = await client.history(running["prompt_id"])
            return entry if entry is not None else None

        entry = await eventually(interrupted, "the prompt stopped on its server")
        assert entry["status"]["status_str"] == "error"
    finally:
        await client.close()

    fake.reset_faults()
    later = await ended(easel, (await submit(easel, empty_graph(color=0x445566)))["id"])
    assert later["status"] == "succeeded"  # its place on the server was freed
    still = await store_of(easel).jobs.get(job["id"])
    assert (still.status, still.attempts, still.outputs) == (JobStatus.EXPIRED, 1, ())
    assert await metric(easel, "easel_jobs_expired_total") == 1
    assert await metric(easel, 'easel_jobs_finished_total{state="expired"}') == 1


async def test_an_ended_job_past_its_retention_is_deleted_with_its_output_media(
    easel_factory: EaselFactory, fake: FakeComfy, tmp_path: Path
) -> None:
    easel = await easel_factory(**SWEEPING)
    await easel.register(fake, "gpu")
    done = await ended(easel, (await submit(easel, empty_graph()))["id"])
    assert done["status"] == "succeeded"
    [media_id] = [output["media_id"] for output in done["outputs"]]
    media = store_of(easel).media
    assert [m.id for m in await media.of_job(done["id"])] == [media_id]
    assert media_file(tmp_path, media_id).exists()

    await past_retention(easel, done["id"])
    await eventually(lambda: gone(easel, done["id"]), "the ended job deleted")

    async def media_gone() -> bool:
        try:
            await media.get(media_id)
        except NotFound:
            return True
        return False

    assert await media_gone()  # deleted before its job
    assert not media_file(tmp_path, media_id).exists()
    status, _ = await easel.call("GET", f"/api/v1/media/{media_id}")
    assert status == 404
    assert await metric(easel, 'easel_retention_deleted_total{kind="media"}') == 1


async def test_media_past_their_deadline_are_deleted_and_the_others_kept(
    easel_factory: EaselFactory, tmp_path: Path
) -> None:
    easel = await easel_factory(**SWEEPING)
    media = store_of(easel).media
    due = await media.put(png(), "image/png", "due.png", expires_at=now() - timedelta(seconds=1))
    later = await media.put(png(), "image/png", "later.png", expires_at=now() + timedelta(days=1))
    kept = await media.put(png(), "image/png", "kept.png")

    async def deleted() -> bool:
        try:
            await media.get(due.id)
        except NotFound:
            return True
        return False

    await eventually(deleted, "the due upload deleted")
    assert not media_file(tmp_path, due.id).exists()
    assert (await media.get(later.id)).id == later.id
    assert await media.read(kept.id) == png()
