"""Jobs as callers see them: submit (one, or a batch over seeds), get, list, cancel,
and watch a job change.

A submitted job is stored ``queued`` and the dispatcher is woken; everything after
that happens in :mod:`actors.comfyui.dispatcher` and :mod:`actors.comfyui.tracker`.
Cancelling a queued job ends it at once (a conditional update, so a dispatcher that
claims it first wins and the cancel becomes a request); a dispatched or running job
is marked ``cancel_requested``, removed from its server's queue and interrupted
there, and ends ``cancelled`` when its server confirms. Loop only.

Each job has an ``owner``, the key that submitted it. Unless the caller is admin, a
submit may name only its owner's media (``media:<id>``; any other id is refused as
though it did not exist) and is refused (``Overloaded``) when it would take its owner
past ``max_queued_jobs_per_key`` jobs queued, dispatched or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import datetime
from typing import Any

from actors.comfyui.assets import check_graph, resolve_references
from actors.comfyui.client import ComfyUnavailable
from actors.comfyui.fleet import FleetService
from actors.comfyui.media import MEDIA_PREFIX, media_inputs
from actors.comfyui.tracker import ACTIVE, TERMINAL
from engine.errors import Conflict, Invalid, NotFound, Overloaded
from engine.settings import Settings
from engine.storage import Job, Jobs, JobStatus, MediaRepository, NewJob, Page
from engine.storage.records import now

__all__ = ["SEED_INPUTS", "JobService", "KeyReused", "with_seed"]

log = logging.getLogger(__name__)

SEED_INPUTS = ("seed", "noise_seed")
"""Inputs a batch sets to each of its seeds."""
_WATCH_POLL = 1.0
"""Seconds a watcher waits for a local change before reading the job again (a job
another node drives changes only in the database)."""
_QUEUE_FULL_RETRY = 5.0
"""Seconds a key at its job limit is told to wait: a job runs for seconds to minutes."""


class KeyReused(Invalid):
    """An idempotency key used before, where keys are single-use (Comfy API v2)."""

    code = "idempotency_key_reuse"

    def __init__(self, key: str) -> None:
        super().__init__(
            "this Idempotency-Key was used before; keys are single-use: find the job it "
            "made by listing your jobs instead of submitting again"
        )
        self.key = key


Shown = tuple[str | None, str, bytes]
"""A preview: the node it shows (if known), its content type, the image."""


def with_seed(prompt: dict[str, Any], seed: int) -> dict[str, Any]:
    """A copy of ``prompt`` with every seed input set to ``seed``. Raises ``Invalid``
    when it has none."""
    seeded = copy.deepcopy(prompt)
    found = False
    for node in seeded.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name in SEED_INPUTS:
            if name in inputs and not isinstance(inputs[name], list):
                inputs[name] = seed
                found = True
    if not found:
        raise Invalid(f"a batch needs a workflow with a literal {' or '.join(SEED_INPUTS)} input")
    return seeded


def check_prompt(prompt: dict[str, Any]) -> None:
    """Refuse what is not an API-format workflow (the server validates the rest)."""
    if not prompt:
        raise Invalid("the workflow has no nodes")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise Invalid(f"node {node_id!r} needs a class_type (API format)")
        if not isinstance(node.get("inputs", {}), dict):
            raise Invalid(f"node {node_id!r}: inputs must be an object")


class JobService:
    """The job API over the store, the fleet and the local dispatcher."""

    def __init__(
        self, jobs: Jobs, media: MediaRepository, fleet: FleetService, settings: Settings
    ) -> None:
        self._jobs = jobs
        self._media = media
        self._fleet = fleet
        self.settings = settings
        self._wake: Callable[[], None] = lambda: None
        self._previews: Callable[[str], Shown | None] = lambda _job_id: None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._admission: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def previews_from(self, source: Callable[[str], Shown | None]) -> None:
        """Where the newest preview of a running job comes from (the tracker of the
        node that drives it keeps it in memory)."""
        self._previews = source

    def preview(self, job_id: str) -> Shown | None:
        """The newest preview of a job this node drives, ``(node id or None, content
        type, image)``, if it has one. Loop only."""
        return self._previews(job_id)

    def wake_with(self, wake: Callable[[], None]) -> None:
        """Who runs a dispatch round when a job is queued or ends (the dispatcher)."""
        self._wake = wake

    def changed(self, job: Job) -> None:
        """A job changed on this node: wake its watchers (and the dispatcher once it
        ended or was queued again). Loop only."""
        for event in self._watchers.get(job.id, ()):
            event.set()
        if job.status not in ACTIVE:
            self._wake()

    # --- submitting -----------------------------------------------------------------------

    async def submit(
        self, new: NewJob, *, admin: bool = False, single_use: bool = False
    ) -> tuple[Job, bool]:
        """Queue a job for ``new.owner``; ``(job, created)``: with an idempotency key
        its owner already used, the job first made with it (``single_use``: refused
        instead, ``KeyReused``). ``admin``: any media, no limit. Raises ``Invalid`` (a
        bad workflow, media that is not the owner's: ``MissingAssets``,
        ``GraphRejected``), ``Overloaded`` (the owner is at its job limit)."""
        new = await self._prepared(new, admin)
        if new.idempotency_key is not None:
            earlier = await self._jobs.by_idempotency_key(new.owner, new.idempotency_key)
            if earlier is not None:
                if single_use:
                    raise KeyReused(new.idempotency_key)
                return earlier, False
        async with self._admitting(new.owner, 1, admin):
            job, created = await self._jobs.submit(new, retention=self.settings.job_retention)
        if created:
            self._wake()
        elif single_use and new.idempotency_key is not None:
            raise KeyReused(new.idempotency_key)  # a concurrent submit took it first
        return job, created

    async def _prepared(self, new: NewJob, admin: bool) -> NewJob:
        """``new`` checked, its references to media resolved."""
        check_prompt(new.prompt)
        prompt = await resolve_references(new.prompt, self._media, new.owner, admin=admin)
        check_graph(prompt, self._known_types())
        ready = new.model_copy(update={"prompt": prompt})
        await self._check_media(ready, admin)
        return ready

    def _known_types(self) -> list[frozenset[str]]:
        return [v.catalog.node_types for v in self._fleet.views() if v.catalog_at is not None]

    async def submit_batch(
        self, new: NewJob, seeds: list[int], *, admin: bool = False
    ) -> list[Job]:
        """One job per seed (each key suffixed ``#<n>``), in seed order; every seed
        counts towards the owner's limit. Raises what :meth:`submit` does."""
        if not 1 <= len(seeds) <= 1000:
            raise Invalid("a batch has 1 to 1000 seeds")
        new = await self._prepared(new, admin)
        jobs: list[Job] = []
        async with self._admitting(new.owner, len(seeds), admin):
            for index, seed in enumerate(seeds):
                key = f"{new.idempotency_key}#{index}" if new.idempotency_key else None
                one = new.model_copy(
                    update={
                        "prompt": with_seed(new.prompt, seed),
                        "params": {**new.params, "seed": seed},
                        "idempotency_key": key,
                    }
                )
                job, _ = await self._jobs.submit(one, retention=self.settings.job_retention)
                jobs.append(job)
        self._wake()
        return jobs

    async def _check_media(self, new: NewJob, admin: bool) -> None:
        # Another key's media answers exactly as media that does not exist.
        for media_id in sorted(media_inputs(new.prompt)):
            try:
                record = await self._media.get(media_id)
            except NotFound:
                record = None
            if record is None or not (
                admin or (record.owner is not None and record.owner == new.owner)
            ):
                raise Invalid(f"workflow input {MEDIA_PREFIX}{media_id}: no such media")

    @contextlib.asynccontextmanager
    async def _admitting(self, owner: str | None, count: int, admin: bool) -> AsyncIterator[None]:
        # One submit of an owner at a time on this node from the count to the insert,
        # so concurrent submits can't pass the limit together (engines sharing a
        # database can, each by what it admits at that moment).
        if admin or owner is None:
            yield
            return
        lock = self._admission.get(owner)
        if lock is None:
            lock = self._admission[owner] = asyncio.Lock()
        async with lock:
            limit = self.settings.max_queued_jobs_per_key
            unfinished = await self._jobs.count_unfinished(owner)
            if unfinished + count > limit:
                log.warning("job refused: key %s has %d of %d jobs", owner, unfinished, limit)
                raise Overloaded(
                    f"this key has {unfinished} unfinished jobs; its limit is {limit}",
                    retry_after=_QUEUE_FULL_RETRY,
                )
            yield

    # --- reading --------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """Raises ``NotFound``."""
        return await self._jobs.get(job_id)

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:
        """A page in dispatch order (priority, then age), of ``owner``'s jobs if given.
        Raises ``Invalid``."""
        return await self._jobs.list(status=status, owner=owner, limit=limit, offset=offset)

    async def newest(
        self, owner: str | None, *, limit: int, below: tuple[datetime, str] | None = None
    ) -> tuple[Job, ...]:
        """Jobs newest first (``owner``'s if given), created before ``below``."""
        return await self._jobs.newest(owner, limit=limit, below=below)

    async def queue_position(self, job: Job) -> int:
        """1 + how many queued jobs are dispatched before ``job``."""
        return await self._jobs.queue_position(job)

    def watchers(self, job_id: str) -> int:
        """How many watches (event streams, following sessions) follow a job now."""
        return len(self._watchers.get(job_id, ()))

    async def watch(self, job_id: str) -> AsyncGenerator[Job, None]:
        """The job now, then each time it changes, until it has ended. Raises ``NotFound``."""
        event = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(event)
        try:
            job = await self._jobs.get(job_id)
            yield job
            while job.status not in TERMINAL:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), _WATCH_POLL)
                event.clear()
                fresh = await self._jobs.get(job_id)
                if fresh.version != job.version:
                    job = fresh
                    yield job
        finally:
            watchers = self._watchers.get(job_id, set())
            watchers.discard(event)
            if not watchers:
                self._watchers.pop(job_id, None)

    # --- cancelling -----------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: queued → cancelled now; dispatched or running → interrupted on
        its server, cancelled once it confirms. Raises ``NotFound``, ``Conflict`` for a
        job that already ended."""
        for _ in range(10):
            job = await self._jobs.get(job_id)
            if job.status in TERMINAL:
                raise Conflict(f"job {job_id} already {job.status.value}")
            try:
                if job.status is JobStatus.QUEUED:
                    done = await self._jobs.swap(
                        job, status=JobStatus.CANCELLED, finished_at=now(), slot=None
                    )
                    self.changed(done)
                    return done
                asked = (
                    job
                    if job.cancel_requested
                    else await self._jobs.swap(job, cancel_requested=True)
                )
            except Conflict:
                continue  # it changed meanwhile: look again
            await self.stop_on_server(asked)
            self.changed(asked)
            return asked
        raise Conflict(f"job {job_id} keeps changing; try again")

    async def stop_on_server(self, job: Job) -> None:
        """Take a dispatched or running job off its server (best effort: a server
        that is gone lost it anyway)."""
        if job.server_id is None or job.prompt_id is None:
            return
        try:
            await self._fleet.client(job.server_id).stop_prompt(job.prompt_id)
        except (NotFound, ComfyUnavailable):
            pass  # a server that is gone lost the job anyway: reconciliation ends it
