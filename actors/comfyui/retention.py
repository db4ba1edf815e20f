"""The retention sweep: jobs and media whose retention ran out.

Every ``retention_sweep_every`` seconds each engine node:

1. dates the jobs stored without a deadline (``created_at + job_retention``);
2. ends ``expired`` each due job that has not ended (queued, dispatched, running),
   with one conditional update (``Jobs.swap``), then takes it off its server; the
   expired record is kept one more ``job_retention`` so its caller sees why. The node
   that held it finds it ended at its next change or check and lets it go (and stops
   its prompt again, in case it was sent meanwhile);
3. deletes each due job that has ended, with the media it produced;
4. deletes due media (uploads given a deadline).

Several nodes on one database may sweep at once: an update that lost its race is
left to the next sweep, and a record another node deleted first is not an error.
Each step works in batches of :data:`BATCH`, for at most :data:`BATCHES` batches a
sweep. The :class:`RetentionActor` under ``/comfyui`` owns the loop; a failure
crashes it and its supervisor restarts it. Loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from actors.comfyui.jobs import JobService
from actors.comfyui.metrics import FleetMetrics
from actors.comfyui.tracker import TERMINAL
from engine.actor import LoopActor
from engine.errors import Conflict, EaselError, NotFound
from engine.logcontext import job_context
from engine.settings import Settings
from engine.storage import Job, Jobs, JobStatus, MediaRepository
from engine.storage.records import now

__all__ = ["BATCH", "BATCHES", "EXPIRED_ERROR", "Retention", "RetentionActor"]

log = logging.getLogger(__name__)

BATCH = 200
"""Records read and handled at once."""
BATCHES = 50
"""Batches one step of a sweep handles at most (the rest waits for the next sweep)."""
EXPIRED_ERROR = "its retention ran out before it ended"
T = TypeVar("T")
_TRIES = 3
"""Times an expiry is tried on a job that keeps changing (a lease renewed meanwhile)."""


class Retention:
    """Sweeps the store of one engine node's database for what outlived its retention."""

    def __init__(
        self,
        jobs: Jobs,
        media: MediaRepository,
        service: JobService,
        settings: Settings,
        metrics: FleetMetrics,
    ) -> None:
        self._jobs = jobs
        self._media = media
        self._service = service
        self._settings = settings
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, crashed: Callable[[BaseException], None]) -> None:
        """Start the loop; ``crashed(error)`` is called if it fails unexpectedly."""
        self._task = asyncio.get_running_loop().create_task(self._guard(crashed))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _guard(self, crashed: Callable[[BaseException], None]) -> None:
        try:
            while True:
                try:
                    await self.sweep()
                except EaselError as error:  # the store is down: the next sweep tries again
                    log.warning("retention sweep: %s", error)
                await asyncio.sleep(self._settings.retention_sweep_every)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("retention sweep failed")
            crashed(error)

    # --- one sweep ------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Date, expire and delete what is due now. Raises the store's errors."""
        moment = now()
        await _in_batches(lambda: self._jobs.undated(limit=BATCH), self._date)
        await _in_batches(
            lambda: self._jobs.due(moment, limit=BATCH), lambda job: self._ended(job, moment)
        )
        await _in_batches(
            lambda: self._media.due(moment, limit=BATCH),
            lambda media: self._delete(media.id, self._media.delete, "media"),
        )

    @property
    def _retention(self) -> timedelta:
        return timedelta(seconds=self._settings.job_retention)

    async def _date(self, job: Job) -> None:
        with contextlib.suppress(Conflict, NotFound):  # changed meanwhile: next sweep
            await self._jobs.swap(job, expires_at=job.created_at + self._retention)

    async def _ended(self, job: Job, moment: datetime) -> None:
        async with job_context(job.id):
            if job.status in TERMINAL:
                await self._delete_job(job)
            else:
                await self._expire(job, moment)

    async def _expire(self, job: Job, moment: datetime) -> None:
        for _ in range(_TRIES):
            if job.status in TERMINAL:
                return  # it ended meanwhile: deleted when it is due again
            try:
                done = await self._jobs.swap(
                    job,
                    status=JobStatus.EXPIRED,
                    finished_at=moment,
                    slot=None,
                    lease_owner=None,
                    lease_expires=None,
                    error=EXPIRED_ERROR,
                    expires_at=moment + self._retention,
                )
            except Conflict:
                try:
                    job = await self._jobs.get(job.id)
                except NotFound:
                    return
                continue
            except NotFound:
                return
            log.info("job %s expired (%s)", job.id, job.status.value)
            self._metrics.expired.inc()
            self._metrics.finished(done)
            await self._service.stop_on_server(done)
            self._service.changed(done)
            return

    async def _delete_job(self, job: Job) -> None:
        made = {record.id for record in await self._media.of_job(job.id)}
        made.update(output.media_id for output in job.outputs)  # stored before job_id was
        for media_id in sorted(made):
            await self._delete(media_id, self._media.delete, "media")
        await self._delete(job.id, self._jobs.delete, "job")

    async def _delete(
        self, record_id: str, delete: Callable[[str], Awaitable[None]], kind: str
    ) -> None:
        try:
            await delete(record_id)
        except NotFound:
            return  # another node swept it first
        self._metrics.retention_deleted.labels(kind).inc()


async def _in_batches(
    read: Callable[[], Awaitable[tuple[T, ...]]], handle: Callable[[T], Awaitable[None]]
) -> None:
    """Handle what ``read`` returns, batch after batch while they come full."""
    for _ in range(BATCHES):
        batch = await read()
        for item in batch:
            await handle(item)
        if len(batch) < BATCH:
            return


# --- the actor that owns the loop ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Crashed:
    error: BaseException


class RetentionActor(LoopActor[_Crashed, None]):
    """Runs a :class:`Retention`'s loop for the life of an incarnation."""

    kind = "comfyui_retention"

    def __init__(self, retention: Retention) -> None:
        self._retention = retention

    async def on_start(self) -> None:
        ref = self.context.ref
        self._retention.start(lambda error: ref.tell(_Crashed(error)))

    async def receive(self, message: _Crashed) -> None:
        raise RuntimeError("the retention sweep failed") from message.error

    async def on_stop(self) -> None:
        await self._retention.stop()

    async def on_failure(self, error: BaseException) -> None:
        await self._retention.stop()
