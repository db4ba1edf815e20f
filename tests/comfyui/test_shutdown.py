"""An orderly stop of the engine leaves its jobs durable: nothing failed, nothing
requeued, no attempt spent; the next start takes them over."""

from __future__ import annotations

from pathlib import Path

from engine.metrics import new_registry
from engine.settings import Settings
from engine.storage import JobStatus, open_store
from ops.fakecomfy import FakeComfy
from tests.comfyui.conftest import EaselFactory, empty_graph, exactly_once, status_of, submit


async def test_an_orderly_stop_fails_no_job_and_spends_no_attempt(
    easel_factory: EaselFactory, fake: FakeComfy, tmp_path: Path
) -> None:
    first = await easel_factory()
    await first.register(fake, "gpu", max_in_flight=1)
    await first.state_of("gpu", "idle")
    fake.slow(0.3, steps=10)  # each job runs for seconds: the stop finds one running
    jobs = [await submit(first, empty_graph(color=c)) for c in range(3)]
    await status_of(first, jobs[0]["id"], "running")
    await first.server.close()  # what SIGTERM runs: sessions, requests, then the engine

    store = await open_store(Settings(data_dir=tmp_path / "data"), new_registry())
    try:
        stored = [await store.jobs.get(job["id"]) for job in jobs]
    finally:
        await store.close()
    assert [(job.status, job.attempts, job.error) for job in stored] == [
        (JobStatus.RUNNING, 1, None),
        (JobStatus.QUEUED, 0, None),
        (JobStatus.QUEUED, 0, None),
    ]
    fake.slow(0.01, steps=1)
    second = await easel_factory()
    await exactly_once(second, [job["id"] for job in jobs], seconds=30)
