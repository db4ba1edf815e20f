"""The jobs one engine node drives: from dispatched to an end, exactly once.

A node *holds* a job while its lease names the node. Every change goes through
``Jobs.swap`` on the version last read, one change at a time per job (a lock each),
so whatever races (a second node that took the lease over, a cancel from the API, a
result that arrives twice) at most one change applies to a given state; the loser
re-reads, and lets the job go if it is no longer its own.

What ends a held job:

- the server's history has it: success → outputs fetched and stored as media, the
  job succeeds (if that last change loses a race, the stored media are deleted
  again, so an output is recorded once); an interrupt → cancelled when asked, else
  re-queued; an execution error → failed with it;
- the server has neither history nor queue entry for it, or nothing listens at its
  address (a ComfyUI that is down has lost its queue): it is lost → re-queued for
  another attempt, or failed once ``max_attempts`` are spent.

A server that answers late or drops a connection is *not* proof of a loss: the job
may still be running there, and queuing it again would run it twice. Such a job stays
held and is checked again; only once its server has not answered for
``job_lost_after`` seconds is it re-queued. Likewise outputs that could not be
fetched are fetched again at the next check (the history keeps them), not re-run.

It is checked when the server's socket says the prompt ended, when the server's
socket drops, and every ``job_reconcile_interval`` (which also covers jobs taken
over from another node, whose events go to that node's socket). Loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from actors.comfyui.client import (
    ComfyClient,
    ComfyRefused,
    ComfyUnavailable,
    WorkflowRejected,
    history_status,
    started_at,
)
from actors.comfyui.fleet import FleetService
from actors.comfyui.live import LiveEvents
from actors.comfyui.media import discard, fetch_outputs
from actors.comfyui.metrics import FleetMetrics
from actors.comfyui.progress import ended_detail
from actors.comfyui.tasks import TaskSet
from engine.errors import Conflict, EaselError, NotFound
from engine.logcontext import job_context
from engine.storage import Job, JobOutput, Jobs, JobStatus, MediaRepository
from engine.storage.records import now

__all__ = ["ACTIVE", "TERMINAL", "JobTracker"]

log = logging.getLogger(__name__)

ACTIVE = frozenset({JobStatus.DISPATCHED, JobStatus.RUNNING})
TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class JobTracker:
    """The jobs this node holds, their locks, and every change made to them."""

    STOP_GRACE = 5.0
    """Seconds :meth:`stop` lets the changes under way finish before cancelling them."""

    def __init__(
        self,
        jobs: Jobs,
        media: MediaRepository,
        fleet: FleetService,
        node_id: str,
        lease: float,
        metrics: FleetMetrics,
        changed: Callable[[Job], None],
        *,
        lost_after: float = 30.0,
    ) -> None:
        self._jobs = jobs
        self._media = media
        self._fleet = fleet
        self.node_id = node_id
        self._lease = lease
        self._metrics = metrics
        self._changed = changed
        self._held: dict[str, Job] = {}
        self._prompts: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lost_after = lost_after
        self._silent_since: dict[str, float] = {}
        """When each held job's server first failed to answer (cleared by an answer)."""
        self.sending: set[str] = set()
        """Jobs whose ``POST /prompt`` is under way: not lost if the server lacks them."""
        self._tasks = TaskSet("job task")
        self.live = LiveEvents(
            self._prompts.get,
            self._held.get,
            self.spawn,
            started=self._started,
            ended=self.reconcile,
            write=self._write_progress,
        )
        """Progress and previews of the held jobs; ``live.on_event`` hears the sockets."""

    # --- what is held ----------------------------------------------------------------

    def held(self) -> list[Job]:
        return list(self._held.values())

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    def hold(self, job: Job) -> None:
        """Start driving ``job`` (its lease names this node)."""
        self._held[job.id] = job
        if job.prompt_id:
            self._prompts[job.prompt_id] = job.id

    def _let_go(self, job_id: str) -> None:
        job = self._held.pop(job_id, None)
        if job is not None and job.prompt_id:
            self._prompts.pop(job.prompt_id, None)
        self.live.drop(job_id)
        self._silent_since.pop(job_id, None)
        self._locks.pop(job_id, None)

    def lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    def lease_until(self) -> datetime:
        return now() + timedelta(seconds=self._lease)

    # --- changing a held job (under its lock) ---------------------------------------------

    async def swap(self, job_id: str, **changes: Any) -> Job | None:
        """Apply ``changes`` to a held job; ``None`` when it is no longer this node's
        (it is let go). A job that reaches queued or an end is let go too."""
        job = self._held.get(job_id)
        if job is None:
            return None
        try:
            new = await self._jobs.swap(job, **changes)
        except Conflict:
            try:
                fresh = await self._jobs.get(job_id)
            except NotFound:
                self._let_go(job_id)
                return None
            if fresh.lease_owner != self.node_id or fresh.status not in ACTIVE:
                await self._expired(job, fresh)
                self._let_go(job_id)
                self._changed(fresh)
                return None
            self._held[job_id] = fresh
            new = await self._jobs.swap(fresh, **changes)
        self._held[job_id] = new
        if new.status not in ACTIVE:
            self._let_go(job_id)
        self._changed(new)
        return new

    async def finish(self, job_id: str, status: JobStatus, **changes: Any) -> Job | None:
        """End a held job; frees its slot and lease."""
        job = self._held.get(job_id)
        done = await self.swap(
            job_id,
            status=status,
            slot=None,
            lease_owner=None,
            lease_expires=None,
            finished_at=now(),
            **changes,
        )
        if done is not None and job is not None:
            self._metrics.finished(done)
        return done

    async def requeue(self, job_id: str, reason: str, *, reached: bool = True) -> Job | None:
        """A held job was lost: queue it for another attempt, or fail it when its
        attempts are spent. ``reached=False``: the prompt never reached the server
        (its submit failed), so the attempt does not count."""
        job = self._held.get(job_id)
        if job is None:
            return None
        if job.cancel_requested:
            return await self.finish(job_id, JobStatus.CANCELLED, error=reason)
        if reached and job.attempts >= job.max_attempts:
            return await self.finish(
                job_id,
                JobStatus.FAILED,
                error=f"gave up after {job.attempts} attempt(s): {reason}",
            )
        log.info("job %s lost (%s); queued again", job_id, reason)
        self._metrics.redispatches.inc()
        return await self.swap(
            job_id,
            status=JobStatus.QUEUED,
            slot=None,
            lease_owner=None,
            lease_expires=None,
            server_id=None,
            prompt_id=None,
            progress=0.0,
            detail={},
            error=reason,
            attempts=job.attempts if reached else job.attempts - 1,
        )

    async def reject(self, job_id: str, error: WorkflowRejected) -> None:
        """The server refused the workflow: the job fails at once, with node errors."""
        await self.finish(
            job_id,
            JobStatus.FAILED,
            error=error.message,
            node_errors=error.node_errors,
        )

    # --- what the sockets say (see live.py) -----------------------------------------------

    async def _started(self, job_id: str) -> None:
        async with self.lock(job_id):
            job = self._held.get(job_id)
            if job is not None and job.status is JobStatus.DISPATCHED:
                await self.swap(job_id, status=JobStatus.RUNNING, started_at=now())

    async def _write_progress(self, job_id: str) -> None:
        async with self.lock(job_id):
            job, run = self._held.get(job_id), self.live.run(job_id)
            if job is not None and run is not None and job.status is JobStatus.RUNNING:
                await self.swap(job_id, progress=run.fraction, detail=run.detail())

    # --- checking a held job against its server -------------------------------------------

    async def reconcile(self, job_id: str) -> None:
        """Find out what became of a held job on its server and act on it."""
        async with self.lock(job_id), job_context(job_id):
            job = self._held.get(job_id)
            if job is None or job_id in self.sending or job.status not in ACTIVE:
                return
            try:
                await self._reconcile(job)
            except EaselError as error:  # the store is down: try again next round
                log.warning("job %s not reconciled: %s", job_id, error)

    async def _reconcile(self, held: Job) -> None:
        # Read again: a cancel from the API, or another node taking the lease over,
        # changes the job in the database only.
        try:
            job = await self._jobs.get(held.id)
        except NotFound:
            self._let_go(held.id)
            return
        if job.lease_owner != self.node_id or job.status not in ACTIVE:
            await self._expired(held, job)
            self._let_go(job.id)
            return
        self._held[job.id] = job
        server_id, prompt_id = job.server_id, job.prompt_id
        if server_id is None or prompt_id is None:
            await self.requeue(job.id, "dispatched without a server")
            return
        try:
            client = self._fleet.client(server_id)
            name = self._fleet.view(server_id).name
        except NotFound:
            await self.requeue(job.id, f"server {server_id} was removed")
            return
        try:
            entry = await client.history(prompt_id)
            if entry is None:
                queue = await client.queue()
                if prompt_id in queue:
                    self._silent_since.pop(job.id, None)
                    if job.cancel_requested:  # the cancel may have missed it: again
                        await _stop_prompt(client, prompt_id)
                    elif prompt_id in queue.running and job.status is JobStatus.DISPATCHED:
                        await self.swap(job.id, status=JobStatus.RUNNING, started_at=now())
                    return
                entry = await client.history(prompt_id)  # it may have just finished
        except ComfyUnavailable as error:
            await self._unanswered(job.id, name, error)
            return
        if entry is None:
            if self._recently_silent(job.id):
                return  # its submit (or the server) went unanswered: it may yet appear
            await self.requeue(job.id, f"lost on server {name}")
            return
        outcome, data = history_status(entry)
        ran: dict[str, Any] = {}
        if job.started_at is None and outcome != "interrupted":
            # it ran and ended before its start was recorded: the server's word for when
            ran["started_at"] = started_at(entry) or now()
        if outcome == "success":
            await self._succeed(job, entry, client, name, ran)
        elif outcome == "interrupted":
            if job.cancel_requested:
                await self.finish(job.id, JobStatus.CANCELLED)
            else:
                await self.requeue(job.id, f"interrupted on server {name}")
        else:
            node = str(data.get("node_id", ""))
            message = str(data.get("exception_message") or "execution failed").strip()
            errors = {
                node: {
                    "class_type": data.get("node_type"),
                    "errors": [{"type": data.get("exception_type"), "message": message}],
                }
            }
            await self.finish(
                job.id, JobStatus.FAILED, error=message, node_errors=errors if node else {}, **ran
            )

    def unanswered(self, job_id: str) -> None:
        """The server did not answer a request about the job (its submit): until
        ``lost_after`` has passed, its absence from the server is not taken for a loss."""
        self._silent_since.setdefault(job_id, time.monotonic())

    def _recently_silent(self, job_id: str) -> bool:
        first = self._silent_since.get(job_id)
        return first is not None and time.monotonic() - first < self._lost_after

    async def _unanswered(self, job_id: str, name: str, error: ComfyUnavailable) -> None:
        """The server did not answer about a held job: lost if nothing listens there,
        or once it has been silent for ``lost_after`` seconds; else checked again."""
        if not isinstance(error, ComfyRefused):
            self.unanswered(job_id)
            if self._recently_silent(job_id):
                log.info("job %s: server %s did not answer (%s)", job_id, name, error.message)
                return
        await self.requeue(job_id, f"server {name} unreachable: {error.message}")

    async def _succeed(
        self,
        job: Job,
        entry: dict[str, Any],
        client: ComfyClient,
        name: str,
        ran: dict[str, Any],
    ) -> None:
        """Store the outputs (as the job owner's media) and end the job succeeded;
        ``ran``: more changes to make with that last one."""
        job_id = job.id
        try:
            outputs = await fetch_outputs(entry, client, self._media, job)
        except ComfyUnavailable as error:
            # it ran: fetch again at the next check (a server that lost its history
            # meanwhile makes the job lost then)
            await self._unanswered(job_id, name, error)
            return
        try:
            done = await self.finish(
                job_id,
                JobStatus.SUCCEEDED,
                outputs=outputs,
                progress=1.0,
                detail=ended_detail(job, self.live.run(job.id)),
                **ran,
            )
        except BaseException:
            await asyncio.shield(self._discard_unrecorded(job_id, outputs))
            raise
        if done is None or done.status is not JobStatus.SUCCEEDED:
            await discard(outputs, self._media)  # another node recorded it first

    async def _expired(self, held: Job, fresh: Job) -> None:
        """A held job the retention sweep ended meanwhile: its prompt, which may have
        been sent since the sweep stopped it, is taken off its server again."""
        if fresh.status is not JobStatus.EXPIRED:
            return
        server_id, prompt_id = fresh.server_id or held.server_id, fresh.prompt_id or held.prompt_id
        if server_id is None or prompt_id is None:
            return
        try:
            client = self._fleet.client(server_id)
        except NotFound:
            return
        await _stop_prompt(client, prompt_id)

    async def _discard_unrecorded(self, job_id: str, outputs: tuple[JobOutput, ...]) -> None:
        # The last change failed or was cancelled, perhaps after it committed: the
        # outputs go only if the job does not list them. When the store can't tell,
        # they stay (an unlisted file costs disk; a listed one missing is broken).
        try:
            job = await self._jobs.get(job_id)
        except EaselError:
            return
        if job.outputs != outputs:
            await discard(outputs, self._media)

    async def confirm(self, job_id: str) -> Job | None:
        """Renew a held job's lease and read it again, right before it is sent: ``None``
        when it is no longer this node's (taken over meanwhile), else the job (whose
        ``cancel_requested`` may have been set meanwhile)."""
        return await self.swap(job_id, lease_expires=self.lease_until())

    # --- leases -------------------------------------------------------------------------

    async def renew(self) -> None:
        """Extend the lease of every held job (one that changed hands is let go)."""
        for job_id in list(self._held):
            async with self.lock(job_id), job_context(job_id):
                if job_id in self._held:
                    try:
                        await self.swap(job_id, lease_expires=self.lease_until())
                    except EaselError as error:
                        log.warning("lease of job %s not renewed: %s", job_id, error)

    async def take_over(self, *, everything: bool = False) -> int:
        """Hold every dispatched or running job whose lease has expired (``everything``:
        whatever its lease, for a node that alone uses its database) and check each
        against its server. Returns how many were taken."""
        taken = 0
        stamp = now()
        for status in ACTIVE:
            page = await self._jobs.list(status=status, limit=500)
            for job in page.items:
                if job.id in self._held:
                    continue
                expired = job.lease_expires is None or job.lease_expires < stamp
                if not (everything or expired or job.lease_owner == self.node_id):
                    continue
                try:
                    claimed = await self._jobs.swap(
                        job, lease_owner=self.node_id, lease_expires=self.lease_until()
                    )
                except (Conflict, NotFound):
                    continue
                self.hold(claimed)
                if job.lease_owner not in (None, self.node_id):
                    self._metrics.takeovers.inc()
                taken += 1
                self.spawn(self.reconcile(claimed.id))
        return taken

    # --- tasks --------------------------------------------------------------------------

    def start(self) -> None:
        """Accept work again (after :meth:`stop`, when the dispatcher restarts)."""
        self._tasks.start()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` as a task of this tracker; once stopped, nothing more starts."""
        self._tasks.spawn(work)

    @property
    def stopped(self) -> bool:
        return self._tasks.stopped

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let the changes under way finish (within ``grace`` seconds), then cancel.
        Jobs still held stay as stored (dispatched or running, under a lease that
        expires): the next node to start reconciles them, none is queued again here."""
        await self._tasks.stop(grace)


async def _stop_prompt(client: ComfyClient, prompt_id: str) -> None:
    try:
        await client.stop_prompt(prompt_id)
    except ComfyUnavailable as error:
        log.info("prompt %s not stopped yet: %s", prompt_id, error.message)
