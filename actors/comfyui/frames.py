"""Realtime frames through the fleet: one workflow run per canvas frame, on the server
best placed to run it.

A frame is not a job: nothing is stored, and it is answered or failed within its
``timeout``. Each frame goes to a server that is ready (``idle`` or ``busy``, catalog
read), has every node type and model file the workflow names
(:func:`~actors.comfyui.catalog.needs_of`), matches the pipeline's pin if it has one,
and has a free place: fewer than its ``max_in_flight`` frames and jobs *of this node*
on it (frames aren't in the database, so other nodes' frames are not counted). The
least loaded goes first. With every able server full, the frame waits for a place
until its deadline.

On the chosen server the frame's PNG is uploaded and the prompt submitted under this
node's socket client id, so the server's socket tells the router when the prompt ends
(a slow poll of its history covers a missed event). A server that can't be reached,
or dies while the frame runs, costs the frame one retry on another able server; a
second failure, or no other server, fails the frame. A workflow the server refuses
is not retried.

Errors: :class:`~engine.errors.Overloaded` when no ready server can run the workflow
(or none had a place in time), :class:`~actors.comfyui.client.WorkflowRejected` for a
refused workflow, :class:`~engine.errors.PipelineError` for everything else about
the frame. :meth:`FrameRouter.run` is loop only; :meth:`FrameRouter.run_blocking` is
for the replica threads of the ``comfyui`` pipeline kind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.comfyui.catalog import Needs, needs_of
from actors.comfyui.client import (
    ComfyClient,
    ComfyEvent,
    ComfyUnavailable,
    Preview,
    history_status,
    outputs_of,
)
from actors.comfyui.fleet import FleetService
from actors.comfyui.server import ServerView
from engine.errors import EaselError, NotFound, Overloaded, PipelineError

__all__ = ["FrameImage", "FrameRouter", "FrameWork"]

_POLL = 0.25
"""Seconds between two reads of a prompt's history when no socket event came first."""
_ATTEMPTS = 2
"""Servers a frame is tried on: the first choice, then one other if that one fails."""
_GRACE = 5.0
"""Seconds a replica thread waits beyond the frames' own timeout before giving up."""
_ENDS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


@dataclass(frozen=True, slots=True)
class FrameWork:
    """One frame to run: the workflow (params already filled), the PNG to put in as
    ``image_node``'s ``image`` input, whose output answers, and where it may run."""

    prompt: Mapping[str, Any]
    image_node: str
    image: bytes
    output_node: str | None = None
    server: str | None = None
    """Pin: the id, name or URL of the only server the frame may run on."""
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class FrameImage:
    """A frame's result: the first image of the output node."""

    data: bytes
    content_type: str
    server_id: str


@dataclass(slots=True)
class _Waiting:
    """A submitted prompt the router waits for."""

    server_id: str
    ended: asyncio.Event
    """Set when the server's socket says the prompt ended, or the server changed."""
    suspect: bool = False
    """The server stopped being ready meanwhile: it may have lost the prompt."""


class _Failed(Exception):
    """The chosen server failed the frame in a way another server may not."""

    def __init__(self, server: ServerView, error: EaselError) -> None:
        super().__init__(error.message)
        self.server = server
        self.error = error


class FrameRouter:
    """Places realtime frames on the fleet's servers and runs them there.

    ``held(server_id)`` counts the jobs this node drives on a server (they share its
    ``max_in_flight`` with the frames). Made on the loop; see :meth:`run_blocking` for
    the one method other threads may call.
    """

    def __init__(self, fleet: FleetService, held: Callable[[str], int] = lambda _: 0) -> None:
        self._fleet = fleet
        self._held = held
        self._loop = asyncio.get_running_loop()
        self._frames: dict[str, int] = {}
        """Frames in flight per server id."""
        self._prompts: dict[str, _Waiting] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        """Prompts being dropped from their server (a frame that gave up on them)."""
        self._changed = asyncio.Event()
        """Replaced (after being set) whenever a place frees or a server changes."""
        fleet.subscribe(self._event, self._view)

    # --- what the fleet reports -------------------------------------------------------------

    def _event(self, server_id: str, client_id: str, item: ComfyEvent | Preview) -> None:
        if not isinstance(item, ComfyEvent) or item.prompt_id is None:
            return
        waiting = self._prompts.get(item.prompt_id)
        if waiting is None:
            return
        if item.type in _ENDS or (item.type == "executing" and item.data.get("node") is None):
            waiting.ended.set()

    def _view(self, view: ServerView, previous: ServerView | None) -> None:
        if not view.ready:  # its frames find out at once whether it still answers
            for waiting in self._prompts.values():
                if waiting.server_id == view.id:
                    waiting.suspect = True
                    waiting.ended.set()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def in_flight(self) -> dict[str, int]:
        """Frames in flight per server id. Loop only."""
        return {server: count for server, count in self._frames.items() if count}

    # --- running frames -----------------------------------------------------------------------

    def run_blocking(self, works: Sequence[FrameWork]) -> list[FrameImage | EaselError]:
        """Run ``works`` at once on the loop and wait for every answer: one
        :class:`FrameImage` or ``EaselError`` per work, in order.

        For threads other than the loop's (it blocks until the slowest frame ends, at
        most its timeout and a few seconds of grace). Raises ``RuntimeError`` only when
        called on an event loop, which it would block.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop on this thread: the replica thread it is meant for
        else:
            raise RuntimeError("FrameRouter.run_blocking called on an event loop")
        if not works:
            return []
        try:
            future = asyncio.run_coroutine_threadsafe(self._all(works), self._loop)
        except RuntimeError:  # the loop is closed: the engine is stopping
            return [PipelineError("the engine is stopping") for _ in works]
        try:
            return future.result(timeout=max(work.timeout for work in works) + _GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return [PipelineError("the engine did not answer in time") for _ in works]
        except concurrent.futures.CancelledError:
            return [PipelineError("the engine is stopping") for _ in works]

    async def _all(self, works: Sequence[FrameWork]) -> list[FrameImage | EaselError]:
        return list(await asyncio.gather(*(self._answer(work) for work in works)))

    async def _answer(self, work: FrameWork) -> FrameImage | EaselError:
        try:
            return await self.run(work)
        except EaselError as error:
            return error

    async def run(self, work: FrameWork) -> FrameImage:
        """Run one frame on the best placed server, once more elsewhere if that one
        fails. Loop only. Raises ``Overloaded``, ``WorkflowRejected``, ``PipelineError``."""
        deadline = self._loop.time() + work.timeout
        needs = needs_of(work.prompt)
        tried: list[ServerView] = []
        failure = ""
        for _ in range(_ATTEMPTS):
            try:
                server = await self._place(needs, work.server, [s.id for s in tried], deadline)
            except Overloaded as error:
                if not tried:
                    raise
                raise PipelineError(
                    f"ComfyUI server {tried[-1].name} failed the frame ({failure}) and no "
                    f"other could take it: {error.message}"
                ) from None
            try:
                return await self._run_on(server, work, deadline)
            except _Failed as error:
                tried.append(error.server)
                failure = error.error.message
            finally:
                self._release(server)
        raise PipelineError(
            f"ComfyUI servers {', '.join(s.name for s in tried)} failed the frame: {failure}"
        )

    # --- placing ----------------------------------------------------------------------------

    def _load(self, view: ServerView) -> int:
        return self._frames.get(view.id, 0) + self._held(view.id)

    async def _place(
        self, needs: Needs, pin: str | None, tried: list[str], deadline: float
    ) -> ServerView:
        while True:
            able, reasons = self._able(needs, pin, tried)
            if not able:
                raise Overloaded(
                    "no ready ComfyUI server can run this workflow"
                    + (f" ({'; '.join(reasons)})" if reasons else "")
                )
            free = [view for view in able if self._load(view) < view.max_jobs]
            if free:
                server = min(free, key=lambda v: (self._load(v) / v.max_jobs, v.queue_remaining))
                self._frames[server.id] = self._frames.get(server.id, 0) + 1
                return server
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise Overloaded(
                    "every ComfyUI server that can run this workflow is at its max_in_flight"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _able(
        self, needs: Needs, pin: str | None, tried: list[str]
    ) -> tuple[list[ServerView], list[str]]:
        """The servers that may take the frame, and why each other one may not."""
        able: list[ServerView] = []
        reasons: list[str] = []
        views = self._fleet.views()
        if pin is not None and not any(_pinned(v, pin) for v in views):
            reasons.append(f"no server {pin!r} is registered")
        for view in views:
            if pin is not None and not _pinned(view, pin):
                continue
            if view.id in tried:
                reasons.append(f"{view.name}: failed this frame")
            elif not view.ready:
                reasons.append(f"{view.name}: {view.state.value}")
            elif missing := view.catalog.missing(needs):
                reasons.append(f"{view.name} lacks {', '.join(missing)}")
            else:
                able.append(view)
        if not views:
            reasons.append("none is registered")
        return able, reasons

    def _release(self, server: ServerView) -> None:
        self._frames[server.id] -= 1
        if not self._frames[server.id]:
            del self._frames[server.id]
        self._wake()

    # --- on one server ------------------------------------------------------------------------

    async def _run_on(self, server: ServerView, work: FrameWork, deadline: float) -> FrameImage:
        try:
            client = self._fleet.client(server.id)
        except NotFound as error:  # deleted since it was chosen
            raise _Failed(server, error) from None
        prompt_id = str(uuid.uuid4())
        waiting = _Waiting(server.id, asyncio.Event())
        sent = False
        entry: dict[str, Any] | None = None
        try:
            name = await client.upload_image(work.image, f"easel-{prompt_id}.png")
            prompt = copy.deepcopy(dict(work.prompt))
            prompt[work.image_node]["inputs"]["image"] = name
            self._prompts[prompt_id] = waiting
            sent = True  # from here the server may hold it, whatever the submit answers
            await client.submit(
                prompt, client_id=self._fleet.client_id(server.id), prompt_id=prompt_id
            )
            entry = await self._finished(client, prompt_id, waiting, deadline, work.timeout)
            outcome, data = history_status(entry)
            if outcome != "success":
                message = data.get("exception_message") or outcome
                raise PipelineError(f"the workflow failed: {str(message).strip()}")
            found = [out for node, out in outputs_of(entry) if work.output_node in (None, node)]
            if not found:
                raise PipelineError("the workflow produced no image")
            data_bytes, content_type = await client.view(found[0])
        except ComfyUnavailable as error:
            raise _Failed(server, error) from None
        finally:
            self._prompts.pop(prompt_id, None)
            if sent and entry is None:  # given up (deadline, failure, cancel): not left queued
                self._drop(client, prompt_id)
        return FrameImage(data_bytes, content_type or "image/png", server.id)

    def _drop(self, client: ComfyClient, prompt_id: str) -> None:
        """Take a prompt the frame gave up on off its server, pending or running, in a
        task of its own (a cancelled frame can't wait for it)."""

        async def drop() -> None:
            with contextlib.suppress(ComfyUnavailable):
                await client.stop_prompt(prompt_id)

        task = self._loop.create_task(drop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _finished(
        self,
        client: ComfyClient,
        prompt_id: str,
        waiting: _Waiting,
        deadline: float,
        timeout: float,
    ) -> dict[str, Any]:
        """The prompt's history entry once it ended. Raises ``ComfyUnavailable`` (the
        server stopped answering, or restarted and forgot the prompt) and
        ``PipelineError`` past the deadline."""
        while (remaining := deadline - self._loop.time()) > 0:
            waiting.ended.clear()
            entry = await client.history(prompt_id)
            if entry is not None:
                return entry
            if waiting.suspect:
                waiting.suspect = False
                if prompt_id not in await client.queue():
                    entry = await client.history(prompt_id)  # it may have ended meanwhile
                    if entry is not None:
                        return entry
                    raise ComfyUnavailable("the server lost the prompt (it restarted?)")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(_POLL, remaining)):
                    await waiting.ended.wait()
        raise PipelineError(f"no result within {timeout}s")


def _pinned(view: ServerView, pin: str) -> bool:
    """Whether ``pin`` (an id, a name or a URL) names the server of ``view``."""
    return pin in (view.id, view.name) or pin.rstrip("/") == view.url
