"""What the servers' sockets say of the jobs one engine node drives.

Every socket frame of every server comes here (``on_event``): a prompt's start makes
its job ``running``, its last frame (``executing`` with no node) has the job checked
against the server's history, and the frames between feed its progress
(:class:`~actors.comfyui.progress.RunProgress`), written at most every
:data:`PROGRESS_EVERY` seconds (a change within that is written once it has passed),
and its newest preview, kept in memory. The tracker owns the jobs; this owns what
they show while they run. Loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from actors.comfyui.client import ComfyEvent, Preview
from actors.comfyui.progress import Previews, RunProgress
from engine.storage import Job

__all__ = ["PROGRESS_EVERY", "LiveEvents"]

PROGRESS_EVERY = 0.5
"""Seconds between two progress writes of one job (the SSE streams read them)."""

JobWork = Callable[[str], Coroutine[Any, Any, Any]]


class LiveEvents:
    """The live side of the jobs a node drives: progress and previews from sockets."""

    def __init__(
        self,
        job_of: Callable[[str], str | None],
        held: Callable[[str], Job | None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        started: JobWork,
        ended: JobWork,
        write: JobWork,
    ) -> None:
        """``job_of``: the held job of a prompt id; ``held``: a held job by id; the
        job work runs as ``spawn``'s tasks: ``started`` when its prompt starts,
        ``ended`` after its last frame, ``write`` to store its progress."""
        self._job_of = job_of
        self._held = held
        self._spawn = spawn
        self._started = started
        self._ended = ended
        self._write = write
        self._runs: dict[str, RunProgress] = {}
        self._previews = Previews()
        self._written_at: dict[str, float] = {}
        self._due: set[str] = set()
        """Jobs whose progress changed within the throttle: written when it has passed."""

    def run(self, job_id: str) -> RunProgress | None:
        """How far a held job's prompt has got, if it has started."""
        return self._runs.get(job_id)

    def preview(self, job_id: str) -> tuple[str | None, str, bytes] | None:
        """The newest preview of a held job: ``(node id or None, content type,
        image)``, or ``None``."""
        return self._previews.get(job_id)

    def drop(self, job_id: str) -> None:
        """Forget a job this node no longer drives."""
        self._written_at.pop(job_id, None)
        self._due.discard(job_id)
        self._runs.pop(job_id, None)
        self._previews.drop(job_id)

    def on_event(self, server_id: str, client_id: str, item: ComfyEvent | Preview) -> None:
        """Called by the fleet for every socket frame, on the loop."""
        if isinstance(item, Preview):
            self._preview(server_id, item)
            return
        job_id = self._job_of(item.prompt_id) if item.prompt_id is not None else None
        if job_id is None:
            return
        kind = item.type
        if kind == "execution_start":
            self._previews.running(server_id, job_id)
            self._spawn(self._started(job_id))
        elif kind == "executing" and item.data.get("node") is None:
            self._previews.ended(server_id, job_id)
            self._spawn(self._ended(job_id))  # the last frame of every prompt
            return
        elif kind == "executing":
            self._previews.running(server_id, job_id)
        run = self._runs.get(job_id)
        if run is None:
            job = self._held(job_id)
            if job is None:
                return
            run = self._runs[job_id] = RunProgress(job.prompt)
        if run.feed(item):
            self._progress(job_id)

    def _preview(self, server_id: str, preview: Preview) -> None:
        # A preview with metadata names its prompt; a bare one (type 1) belongs to the
        # job its server runs now.
        prompt_id = preview.metadata.get("prompt_id")
        if isinstance(prompt_id, str):
            job_id = self._job_of(prompt_id)
        else:
            job_id = self._previews.job_on(server_id)
        if job_id is not None and self._held(job_id) is not None:
            run = self._runs.get(job_id)
            self._previews.keep(job_id, preview, run.current if run else None)

    def _progress(self, job_id: str) -> None:
        if job_id in self._due:
            return
        since = time.monotonic() - self._written_at.get(job_id, float("-inf"))
        self._due.add(job_id)
        self._spawn(self._write_later(job_id, max(0.0, PROGRESS_EVERY - since)))

    async def _write_later(self, job_id: str, wait: float) -> None:
        try:
            if wait > 0:
                await asyncio.sleep(wait)
        finally:
            self._due.discard(job_id)
        self._written_at[job_id] = time.monotonic()
        await self._write(job_id)
