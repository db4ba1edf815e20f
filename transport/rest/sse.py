"""Following a changing record over Server-Sent Events, the one loop both job event
streams (``/api/v1`` and ``/api/v2``) run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from engine.errors import EaselError

__all__ = ["follow"]

T = TypeVar("T")

log = logging.getLogger(__name__)


async def follow(
    updates: AsyncGenerator[T, None],
    every: float,
    changed: Callable[[T], Awaitable[bool]],
    quiet: Callable[[], Awaitable[None]],
) -> None:
    """Call ``changed`` with each update (it returns ``True`` to stop) and ``quiet``
    after each ``every`` seconds without one, until the updates end or the client
    leaves (``ConnectionResetError`` while writing); an error ends it too (the answer
    has started, so it can't become an error answer). ``updates`` is closed after."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                await quiet()
                continue
            try:
                update = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            if await changed(update):
                break
    except ConnectionResetError:
        pass  # the client went away
    except EaselError as error:  # the record went away (deleted), the store is down …
        log.info("event stream ended: %s", error.message)
    except Exception:  # the answer has started: it can only end, never become an error
        log.exception("event stream failed")
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await updates.aclose()
