"""Incarnation runners: how one incarnation of a behaviour is driven.

``LoopRunner`` drives a ``LoopActor`` as one asyncio task. ``ThreadRunner`` drives a
``ThreadActor`` inside a ``pykka.ThreadingActor``: pykka owns the thread and its
lifecycle; our mailbox owns the messages (bounded, with an overflow policy, surviving
restarts), and pykka's own inbox only carries wake-ups.

A runner reports its end once through ``on_exit(runner, reason)`` on the loop thread:
``reason`` is ``None`` for a normal exit (``context.stop()`` or a requested stop) and
the exception for a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pykka

from engine.actor import LoopActor, ThreadActor
from engine.doorbell import Doorbell
from engine.errors import ActorCrashed, ActorStopped, EaselError
from engine.logcontext import detached
from engine.mailbox import Envelope, Mailbox

__all__ = ["LoopRunner", "Observer", "RunnerEnded", "ThreadRunner"]

log = logging.getLogger(__name__)

RunnerEnded = Callable[[Any, BaseException | None], None]
Observer = Callable[[float], None]
"""Called with the seconds one message (or batch) took to handle."""

_WAKE = object()

_FILL_POLL = 0.0005
"""Seconds between looks at the mailbox while a batch waits to fill (``max_wait``)."""

_BURST = 64
"""Messages a loop actor handles in a row before it yields to the loop's other tasks."""


def _answer(envelope: Envelope, answer: Any) -> None:
    if envelope.reply is None:
        if isinstance(answer, EaselError):
            log.debug("error for a told message dropped: %s", answer)
        return
    if isinstance(answer, BaseException):
        envelope.reply.fail(answer)
    else:
        envelope.reply.resolve(answer)


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _crash_error(path: str, error: BaseException) -> ActorCrashed:
    crashed = ActorCrashed(f"{path} crashed: {type(error).__name__}: {error}")
    crashed.__cause__ = error
    return crashed


B = TypeVar("B", LoopActor[Any, Any], ThreadActor[Any, Any])


class _Runner(Generic[B]):
    """What both runners share: the incarnation, its mailbox, and how to report."""

    def __init__(
        self, behaviour: B, mailbox: Mailbox, path: str, observe: Observer, on_exit: RunnerEnded
    ) -> None:
        self.behaviour: B = behaviour
        self.mailbox = mailbox
        self.path = path
        self.observe = observe
        self.on_exit = on_exit
        self.loop = asyncio.get_running_loop()
        self.stopping = False
        self.direct = False
        """Whether ``call_direct`` may handle messages in the caller's task."""

    def call_direct(self, message: Any, future: asyncio.Future[Any]) -> bool:
        """Handle ``message`` in the caller's task if possible; only loop actors can."""
        return False


class LoopRunner(_Runner[LoopActor[Any, Any]]):
    """Drives one ``LoopActor`` incarnation as a task on the loop. Loop thread only."""

    def __init__(
        self,
        behaviour: LoopActor[Any, Any],
        mailbox: Mailbox,
        path: str,
        observe: Observer,
        on_exit: RunnerEnded,
    ) -> None:
        super().__init__(behaviour, mailbox, path, observe, on_exit)
        self.loop_thread = threading.get_ident()
        self._bell = Doorbell(self.loop)
        self._task: asyncio.Task[None] | None = None
        self.direct = type(behaviour).receive_now is not LoopActor.receive_now
        self._in_hand = False
        """A direct call is running (so a nested one must queue)."""
        self._crash: BaseException | None = None
        """What crashed a direct call; the runner's task reports it."""

    async def start(self) -> None:
        """Run ``on_start``; raises what it raises (the incarnation never runs then).

        Both run in a context of the actor's own log fields: what ``on_start`` starts
        (timers, tasks) does not speak for the request that started the actor."""
        fields = self.behaviour.log_fields()
        await self.loop.create_task(
            self.behaviour.on_start(), name=f"start:{self.path}", context=detached(**fields)
        )
        self._task = self.loop.create_task(
            self._run(), name=f"actor:{self.path}", context=detached(**fields)
        )

    def wake(self) -> None:
        if threading.get_ident() == self.loop_thread:
            self._bell.ring()
        else:
            try:
                self.loop.call_soon_threadsafe(self._bell.ring)
            except RuntimeError:  # loop closed
                pass

    def request_stop(self) -> None:
        self.stopping = True
        self.wake()

    async def stop(self, timeout: float) -> bool:
        """Stop after the current message; cancel if it takes longer than ``timeout``."""
        self.request_stop()
        task = self._task
        if task is None or task.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("%s did not stop within %.2fs; cancelling it", self.path, timeout)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        return True

    def call_direct(self, message: Any, future: asyncio.Future[Any]) -> bool:
        """Handle ``message`` now, in the caller's task, if this incarnation is idle:
        its task asleep with nothing queued, no message in hand, not stopping. Settles
        ``future`` like an ask and returns True; returns False (nothing done) otherwise,
        and the caller queues the message instead. Loop thread only."""
        if (
            self._in_hand
            or self.stopping
            or self._crash is not None
            or not self._bell.sleeping
            or len(self.mailbox)
        ):
            return False
        self._in_hand = True
        started = time.perf_counter()
        try:
            answer = self.behaviour.receive_now(message)
        except EaselError as error:
            answer = error
        except (Exception, asyncio.CancelledError) as error:
            # as in ``_run``: a cancelled await inside the handler is a crash too (the
            # caller's own task is not being cancelled: nothing here awaits)
            answer = _crash_error(self.path, error)
            self._crash = error  # later messages wait in the mailbox for the restart
            self._bell.ring()
        finally:
            self._in_hand = False
            self.observe(time.perf_counter() - started)
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return True

    async def _run(self) -> None:
        mailbox, behaviour = self.mailbox, self.behaviour
        try:
            while not self.stopping:
                await self._bell.wait()
                if self._crash is not None:
                    await self._crashed(self._crash)
                    return
                handled = 0
                while not self.stopping:
                    envelope = mailbox.take_one()
                    if envelope is None:
                        break
                    started = time.perf_counter()
                    try:
                        answer = await behaviour.receive(envelope.message)
                    except EaselError as error:
                        answer = error
                    except (Exception, asyncio.CancelledError) as error:
                        if isinstance(error, asyncio.CancelledError) and _being_cancelled():
                            _answer(envelope, ActorStopped(f"{self.path} stopped mid-message"))
                            raise
                        # anything else, a cancelled await inside the handler included,
                        # leaves the actor's state in doubt: a crash
                        self.observe(time.perf_counter() - started)
                        _answer(envelope, _crash_error(self.path, error))
                        await self._crashed(error)
                        return
                    self.observe(time.perf_counter() - started)
                    _answer(envelope, answer)
                    handled += 1
                    if handled % _BURST == 0:
                        # handlers that never suspend (an actor telling itself, a thread
                        # feeding it) would otherwise keep the loop to this actor
                        await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.on_exit(self, None)
            raise
        try:
            await behaviour.on_stop()
        except Exception:
            log.exception("%s: on_stop failed", self.path)
        self.on_exit(self, None)

    async def _crashed(self, error: BaseException) -> None:
        log.error("%s crashed", self.path, exc_info=error)
        try:
            await self.behaviour.on_failure(error)
        except Exception:
            log.exception("%s: on_failure failed", self.path)
        self.on_exit(self, error)


class _Host(pykka.ThreadingActor):
    """The pykka actor that lends its thread to a ``ThreadRunner``."""

    # A thread abandoned at its shutdown timeout (stuck in a hook) must not keep
    # the process from exiting once the engine has stopped.
    use_daemon_thread = True

    def __init__(self, runner: ThreadRunner) -> None:
        super().__init__()
        self.runner = runner

    def on_start(self) -> None:
        self.runner.thread_started()

    def on_receive(self, message: Any) -> None:
        self.runner.drain()

    def on_stop(self) -> None:
        self.runner.thread_stopped()


class ThreadRunner(_Runner[ThreadActor[Any, Any]]):
    """Drives one ``ThreadActor`` incarnation on a pykka thread.

    ``start``/``stop``/``wake`` are called on the loop (``wake`` from any thread);
    ``thread_started``/``drain``/``thread_stopped`` run on the actor's own thread.
    """

    def __init__(
        self,
        behaviour: ThreadActor[Any, Any],
        mailbox: Mailbox,
        path: str,
        observe: Observer,
        on_exit: RunnerEnded,
        report_lost: Callable[[Envelope, str], None],
    ) -> None:
        super().__init__(behaviour, mailbox, path, observe, on_exit)
        self.report_lost = report_lost
        self._crash: BaseException | None = None
        self._started: asyncio.Future[None] = self.loop.create_future()
        self._stopped: asyncio.Future[None] = self.loop.create_future()
        self._host: pykka.ActorRef[Any] | None = None

    async def start(self) -> None:
        """Start the thread and run ``on_start`` there; raises what ``on_start`` raises."""
        self._host = _Host.start(self)
        try:
            await self._started
        except BaseException:  # on_start failed, or this start was cancelled
            self.request_stop()
            raise

    def wake(self) -> None:
        host = self._host
        if host is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            host.tell(_WAKE)

    def request_stop(self) -> None:
        self.stopping = True
        host = self._host
        if host is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                host.stop(block=False)

    async def stop(self, timeout: float) -> bool:
        """Stop after the current batch; give up waiting after ``timeout`` seconds."""
        self.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), timeout)
        except TimeoutError:
            log.warning("%s did not stop within %.2fs; abandoning its thread", self.path, timeout)
            return False
        return True

    # --- on the actor's thread -------------------------------------------------

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the engine is gone
            pass

    def thread_started(self) -> None:
        try:
            self.behaviour.on_start()
        except Exception as error:
            self._crash = error
            self._to_loop(_settle, self._started, error)
            self.request_stop()
            return
        self._to_loop(_settle, self._started, None)

    def drain(self) -> None:
        mailbox, behaviour = self.mailbox, self.behaviour
        # The default ``receive_batch`` is ``receive`` per message: taking a batch for it
        # gains nothing, and a crash mid-batch would drop the batch's later tells unseen.
        batched = type(behaviour).receive_batch is not ThreadActor.receive_batch
        limit = max(1, behaviour.max_batch) if batched else 1
        while not self.stopping:
            batch = mailbox.take(limit)
            if not batch:
                return
            if batched and len(batch) < limit and behaviour.max_wait > 0:
                self._fill(batch, limit, behaviour.max_wait)
            started = time.perf_counter()
            try:
                if len(batch) == 1 and limit == 1:
                    try:
                        answers: list[Any] = [behaviour.receive(batch[0].message)]
                    except EaselError as error:
                        answers = [error]
                else:
                    answers = list(behaviour.receive_batch([e.message for e in batch]))
                    if len(answers) != len(batch):
                        raise RuntimeError(
                            f"receive_batch answered {len(answers)} of {len(batch)} messages"
                        )
            except Exception as error:
                self.observe(time.perf_counter() - started)
                crashed = _crash_error(self.path, error)
                for envelope in batch:
                    if batched and envelope.reply is None:
                        # nobody waits for a told message: a crashed batch reports it
                        self.report_lost(envelope, "batch_crashed")
                    else:
                        _answer(envelope, crashed)
                self._crashed(error)
                return
            self.observe(time.perf_counter() - started)
            for envelope, answer in zip(batch, answers, strict=True):
                _answer(envelope, answer)

    def _fill(self, batch: list[Envelope], limit: int, wait: float) -> None:
        """Add to ``batch`` what arrives within ``wait`` seconds, until it is full."""
        deadline = time.perf_counter() + wait
        while len(batch) < limit and not self.stopping:
            more = self.mailbox.take(limit - len(batch))
            if more:
                batch.extend(more)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            time.sleep(min(remaining, _FILL_POLL))

    def _crashed(self, error: Exception) -> None:
        log.error("%s crashed", self.path, exc_info=error)
        self._crash = error
        try:
            self.behaviour.on_failure(error)
        except Exception:
            log.exception("%s: on_failure failed", self.path)
        self.request_stop()

    def thread_stopped(self) -> None:
        if self._crash is None:
            try:
                self.behaviour.on_stop()
            except Exception:
                log.exception("%s: on_stop failed", self.path)
        self._to_loop(self._finish)

    def _finish(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)
        started = self._started
        if started.done() and not started.cancelled() and started.exception() is None:
            self.on_exit(self, self._crash)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
