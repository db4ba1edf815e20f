"""The dispatcher: queued jobs to servers of the fleet, shared safely by engine nodes.

Each round it counts the jobs in flight on every server *in the database* (so a
cap holds across nodes), reads the queue in dispatch order (priority, then age), and
gives each job to a ready server that has every node type and model file the
workflow names and a free place, the least loaded first. A job is claimed with one
conditional update (``Jobs.swap``): status ``dispatched``, a lease for this node, a
fresh ``prompt_id`` and a slot ``<server>/<n>`` that the database keeps unique. Two
nodes that race for one job or one slot: one wins, the other moves on. Then the
job's ``media:<id>`` inputs are uploaded and the prompt submitted under this node's
socket client id. A rejected workflow fails at once; an unreachable server puts the
job back in the queue.

Beside the rounds it renews its leases, takes over jobs whose lease expired (a
dead node's), keeps the fleet in step with the stored servers, and reconciles the
jobs it holds (:class:`~actors.comfyui.tracker.JobTracker`). A round runs when a job
is queued or ends, when a server changes state, and at least every half second.

The :class:`DispatcherActor` under ``/comfyui`` owns these tasks: they stop with the
engine, and a failure crashes the actor so its supervisor restarts them. Loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors.comfyui.catalog import needs_of
from actors.comfyui.client import ComfyUnavailable, ComfyUnreached, WorkflowRejected
from actors.comfyui.fleet import FleetService
from actors.comfyui.media import upload_inputs
from actors.comfyui.metrics import FleetMetrics
from actors.comfyui.server import READY, ServerView
from actors.comfyui.tracker import ACTIVE, JobTracker
from engine.actor import LoopActor
from engine.errors import Conflict, EaselError, NotFound
from engine.logcontext import job_context
from engine.settings import Settings
from engine.storage import Job, Jobs, JobStatus, MediaRepository
from engine.storage.records import now

__all__ = ["Dispatcher", "DispatcherActor"]

log = logging.getLogger(__name__)

_ROUND_SHARED = 0.5
"""Seconds between rounds when nothing wakes the dispatcher, on a database other nodes
share (they queue and end jobs this node does not hear of)."""
_ROUND_ALONE = 5.0
"""The same for a node alone on its database: every change wakes it, so the timer only
refreshes the job counts."""
_PAGE = 100
_PAGES = 10
"""Pages of the queue one round looks through: jobs no server can run (a model none
has) do not hide the ones behind them, up to a thousand deep."""


class Dispatcher:
    """Rounds, leases, take-overs and reconciliation for one engine node."""

    def __init__(
        self,
        jobs: Jobs,
        media: MediaRepository,
        fleet: FleetService,
        tracker: JobTracker,
        settings: Settings,
        metrics: FleetMetrics,
        *,
        exclusive: bool,
    ) -> None:
        self._jobs = jobs
        self._media = media
        self._fleet = fleet
        self.tracker = tracker
        self._settings = settings
        self._metrics = metrics
        self._exclusive = exclusive
        self._idle_round = _ROUND_ALONE if exclusive else _ROUND_SHARED
        self._oldest: datetime | None = None
        self._waited_at = float("-inf")
        self._wake = asyncio.Event()
        self._in_flight: dict[str, int] = {}
        self._totals: dict[JobStatus, int] = {}
        """Jobs dispatched and running, as the last round read them."""
        self._tasks: list[asyncio.Task[None]] = []
        fleet.subscribe(tracker.live.on_event, self._server_changed)
        metrics.watch_servers(fleet.views, lambda: dict(self._in_flight))

    def wake(self) -> None:
        """Run a round soon (any job or server change). Loop only."""
        self._wake.set()

    def _server_changed(self, view: ServerView, previous: ServerView | None) -> None:
        if not self._tasks:
            return  # stopped: a server going down with the engine loses nothing
        if previous is None or _placing(view) != _placing(previous):
            self.wake()  # not for a mere health check: it changes no placement
        was_ready = previous is not None and previous.state in READY
        if was_ready and view.state not in READY:
            # its socket dropped or it stopped answering: find out about its jobs now
            for job in self.tracker.held():
                if job.server_id == view.id:
                    self.tracker.spawn(self.tracker.reconcile(job.id))

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, crashed: Callable[[BaseException], None]) -> None:
        """Start the loops; ``crashed(error)`` is called if one fails unexpectedly."""
        loop = asyncio.get_running_loop()
        self.tracker.start()
        self._tasks = [
            loop.create_task(self._guard(self._rounds(), crashed)),
            loop.create_task(self._guard(self._leases(), crashed)),
            loop.create_task(self._guard(self._reconciles(), crashed)),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.tracker.stop()

    @staticmethod
    async def _guard(
        work: Coroutine[Any, Any, None], crashed: Callable[[BaseException], None]
    ) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("dispatcher loop failed")
            crashed(error)

    # --- loops --------------------------------------------------------------------------

    async def _rounds(self) -> None:
        await self._safely(self.tracker.take_over(everything=self._exclusive))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_round)
            self._wake.clear()
            await self._safely(self.round())

    async def _leases(self) -> None:
        every = self._settings.job_lease / 3
        while True:
            await asyncio.sleep(every)
            await self._safely(self.tracker.renew())
            await self._safely(self._fleet.sync())
            await self._safely(self.tracker.take_over())

    async def _reconciles(self) -> None:
        while True:
            await asyncio.sleep(self._settings.job_reconcile_interval)
            for job in self.tracker.held():
                self.tracker.spawn(self.tracker.reconcile(job.id))

    @staticmethod
    async def _safely(work: Any) -> None:
        # The store or a server being down is expected: the next round tries again.
        try:
            await work
        except EaselError as error:
            log.warning("dispatcher: %s", error)

    # --- one round ------------------------------------------------------------------------

    async def _slots(self) -> dict[str, set[int]]:
        """Slot numbers taken on each server, by every node, from the database."""
        taken: dict[str, set[int]] = defaultdict(set)
        totals: dict[JobStatus, int] = {}
        for status in ACTIVE:
            # every in-flight job holds a slot, and slots are bounded (servers x their
            # max_in_flight): one page holds them all, counted as it is read
            page = await self._jobs.list(status=status, limit=500, count=False)
            totals[status] = page.total
            for job in page.items:
                if job.slot and job.server_id:
                    taken[job.server_id].add(int(job.slot.rsplit("/", 1)[1]))
        self._in_flight = {server: len(slots) for server, slots in taken.items()}
        self._totals = totals
        return taken

    async def _count_queued(self) -> None:
        """Report the counts read this round, with the queued jobs counted."""
        queued = await self._jobs.list(status=JobStatus.QUEUED, limit=1)
        self._metrics.counted(
            {**self._totals, JobStatus.QUEUED: queued.total}, await self._waited()
        )

    async def _count(self) -> None:
        """Refresh the job counts by state (one cheap query each)."""
        totals = {
            status: (await self._jobs.list(status=status, limit=1)).total
            for status in (JobStatus.QUEUED, *ACTIVE)
        }
        self._metrics.counted(totals, await self._waited())

    async def _waited(self) -> float:
        """Seconds the longest-waiting queued job has waited (0: none waits). A gauge,
        not a dispatch input: read from the store at most once a second, not per round."""
        at = time.monotonic()
        if at - self._waited_at >= 1.0:
            self._waited_at = at
            self._oldest = await self._jobs.oldest_queued()
        return 0.0 if self._oldest is None else max(0.0, (now() - self._oldest).total_seconds())

    async def round(self) -> int:
        """Dispatch what can be dispatched now; returns how many jobs were claimed."""
        servers = [view for view in self._fleet.views() if view.ready]
        if not servers and not self._in_flight:
            await self._count()  # nothing can be dispatched: only keep the counts fresh
            return 0
        taken = await self._slots()
        if not any(len(taken[v.id]) < v.max_jobs for v in servers):
            await self._count_queued()
            return 0
        claimed = 0
        offset = 0  # queued jobs looked at and left in the queue (no able server)
        for index in range(_PAGES):
            page = await self._jobs.list(
                status=JobStatus.QUEUED, limit=_PAGE, offset=offset, count=index == 0
            )
            if index == 0:
                self._metrics.counted(
                    {**self._totals, JobStatus.QUEUED: page.total}, await self._waited()
                )
            for queued in page.items:
                if not any(len(taken[v.id]) < v.max_jobs for v in servers):
                    return claimed
                outcome = await self._offer(queued, servers, taken)
                if outcome is None:
                    offset += 1
                elif outcome == "conflict":
                    taken = await self._slots()  # another node took a slot: count again
                else:
                    claimed += 1
            if len(page.items) < _PAGE:
                break
        return claimed

    async def _offer(
        self, queued: Job, servers: list[ServerView], taken: dict[str, set[int]]
    ) -> str | None:
        """Claim ``queued`` for the least loaded able server with a free place and start
        sending it: ``"claimed"``; ``"gone"`` (cancelled or taken by another node),
        ``"conflict"`` (a slot was taken meanwhile), ``None`` (no able server: it stays)."""
        if queued.cancel_requested:  # lost while a cancel was on its way
            with contextlib.suppress(Conflict, NotFound):
                await self._jobs.swap(queued, status=JobStatus.CANCELLED, finished_at=now())
            return "gone"
        needs = needs_of(queued.prompt)
        able = [
            v for v in servers if len(taken[v.id]) < v.max_jobs and not v.catalog.missing(needs)
        ]
        if not able:
            return None
        server = min(able, key=lambda v: (len(taken[v.id]) / v.max_jobs, v.queue_remaining))
        slot = min(set(range(server.max_jobs)) - taken[server.id])
        queued_since = queued.updated_at if queued.attempts else queued.created_at
        try:
            job = await self._jobs.swap(
                queued,
                status=JobStatus.DISPATCHED,
                server_id=server.id,
                slot=f"{server.id}/{slot}",
                prompt_id=str(uuid.uuid4()),
                lease_owner=self.tracker.node_id,
                lease_expires=self.tracker.lease_until(),
                attempts=queued.attempts + 1,
                dispatched_at=now(),
                progress=0.0,
                detail={},
            )
        except Conflict:
            return "conflict"  # another node took the job, or the slot
        except NotFound:
            return "gone"
        taken[server.id].add(slot)
        waited = (job.updated_at - queued_since).total_seconds()
        self._metrics.dispatch_latency.observe(max(0.0, waited))
        self.tracker.hold(job)
        self.tracker.sending.add(job.id)
        self.tracker.spawn(self._send(job.id, server))
        return "claimed"

    async def _send(self, job_id: str, server: ServerView) -> None:
        tracker = self.tracker
        try:
            async with tracker.lock(job_id), job_context(job_id):
                job = next((j for j in tracker.held() if j.id == job_id), None)
                if job is None or job.prompt_id is None:
                    return
                client = self._fleet.client(server.id)
                prompt: dict[str, Any] | None = None
                try:
                    prompt = await upload_inputs(job.prompt, client, self._media)
                    if tracker.stopped:  # the engine stops: it was never sent
                        await tracker.requeue(job_id, "the engine stopped", reached=False)
                        return
                    current = await tracker.confirm(job_id)
                    if current is None:
                        return  # another node took it over meanwhile: never sent from here
                    if current.cancel_requested:
                        await tracker.finish(job_id, JobStatus.CANCELLED)
                        return
                    await client.submit(
                        prompt, client_id=self._fleet.client_id(server.id), prompt_id=job.prompt_id
                    )
                except WorkflowRejected as error:
                    await tracker.reject(job_id, error)
                except NotFound as error:
                    await tracker.finish(job_id, JobStatus.FAILED, error=error.message)
                except ComfyUnavailable as error:
                    if prompt is None or isinstance(error, ComfyUnreached):
                        # it never reached the server: another one may take it
                        await tracker.requeue(
                            job_id, f"not submitted to {server.name}: {error}", reached=False
                        )
                    else:
                        # the prompt may have been queued there all the same (its id is
                        # ours): reconciliation looks for it before anything is re-run
                        tracker.unanswered(job_id)
                        log.warning(
                            "job %s: %s did not answer its submit: %s", job_id, server.name, error
                        )
        except EaselError as error:  # the store: reconciliation finds the job later
            log.warning("job %s: %s", job_id, error, extra={"job_id": job_id})
        finally:
            tracker.sending.discard(job_id)
            self.wake()


def _placing(view: ServerView) -> tuple[object, ...]:
    """What of a server's view a dispatch round reads."""
    return (view.ready, view.state, view.max_jobs, view.queue_remaining, view.catalog_at)


# --- the actor that owns the loops --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Crashed:
    error: BaseException


class DispatcherActor(LoopActor[_Crashed, None]):
    """Runs a :class:`Dispatcher`'s loops for the life of an incarnation."""

    kind = "comfyui_dispatcher"

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def on_start(self) -> None:
        ref = self.context.ref
        self._dispatcher.start(lambda error: ref.tell(_Crashed(error)))

    async def receive(self, message: _Crashed) -> None:
        raise RuntimeError("a dispatcher loop failed") from message.error

    async def on_stop(self) -> None:
        await self._dispatcher.stop()

    async def on_failure(self, error: BaseException) -> None:
        await self._dispatcher.stop()
