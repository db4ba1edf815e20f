"""A session following ComfyUI jobs: EVENT frames as each job changes.

CALL ``job.subscribe`` with ``{"job": <id>}`` answers the job as it is now and, until
the job ends or the connection goes, sends EVENT ``job.<status>`` (``job.running``,
``job.succeeded``, ``job.failed``, ``job.expired`` …) when its status changes and ``job.progress``
when only its progress does. Changes are observed the way the REST event stream
observes them (``JobService.watch``: at once for jobs this node drives, within a
second for the others). Only the sessions of the job's owner may follow it
(:func:`may_follow`); any other job is ``not_found``. A connection follows at most
:data:`MAX_FOLLOWED` jobs at once; subscriptions end with the connection. Loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final, Protocol

from engine.errors import EaselError, NotFound, Overloaded
from engine.storage import Job, JobStatus

__all__ = ["MAX_FOLLOWED", "Follower", "JobFeed", "job_data", "may_follow"]

log = logging.getLogger(__name__)

MAX_FOLLOWED: Final = 16
"""Jobs one connection may follow at once."""
_ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})

Send = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Sends one EVENT (name, data) to the session's client."""


class JobFeed(Protocol):
    """Where jobs are watched (``JobService`` is one)."""

    def watch(self, job_id: str) -> AsyncGenerator[Job, None]:
        """The job now, then each time it changes, until it ended. Raises ``NotFound``."""
        ...


def may_follow(session_owner: str | None, job: Job) -> bool:
    """Whether a session made by the API key ``session_owner`` may follow ``job``: only
    when the job's owner is that same key (with authentication off, both are ``None``)."""
    return job.owner == session_owner


def job_data(job: Job) -> dict[str, Any]:
    """What a REPLY and each EVENT say of a job."""
    return {
        "job": job.id,
        "status": job.status.value,
        "progress": job.progress,
        "attempts": job.attempts,
        "error": job.error,
        "outputs": [output.media_id for output in job.outputs],
    }


class Follower:
    """The jobs one attached connection follows, a task each. Loop only."""

    def __init__(self, feed: JobFeed, owner: str | None, send: Send) -> None:
        self._feed = feed
        self._owner = owner
        self._send = send
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def follow(self, job_id: str) -> dict[str, Any]:
        """Start following ``job_id`` (once: a second subscribe changes nothing); the job
        now. Raises ``NotFound`` (no such job, or another key's), ``Overloaded`` past
        :data:`MAX_FOLLOWED`, the store's errors."""
        if job_id not in self._tasks and len(self._tasks) >= MAX_FOLLOWED:
            raise Overloaded(f"this connection already follows {MAX_FOLLOWED} jobs")
        watch = self._feed.watch(job_id)
        try:
            job = await anext(watch)
            if not may_follow(self._owner, job):
                raise NotFound(f"job {job_id} not found")
        except BaseException:
            await watch.aclose()
            raise
        if job_id in self._tasks or job.status in _ENDED:
            await watch.aclose()
            return job_data(job)
        task = asyncio.get_running_loop().create_task(self._run(watch, job))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return job_data(job)

    async def _run(self, watch: AsyncGenerator[Job, None], job: Job) -> None:
        try:
            async for fresh in watch:
                if fresh.status is not job.status:
                    name = f"job.{fresh.status.value}"
                elif fresh.progress != job.progress:
                    name = "job.progress"
                else:
                    job = fresh  # a lease renewed, an attempt counted: nothing to tell
                    continue
                job = fresh
                await self._send(name, job_data(job))
        except EaselError as error:  # the store: the client can subscribe again
            log.warning("following job %s: %s", job.id, error)
        except ConnectionError:
            pass  # the client went away; the detach stops what is left
        finally:
            await watch.aclose()

    def stop(self) -> None:
        """Stop following every job (the connection is going)."""
        for task in self._tasks.values():
            task.cancel()
