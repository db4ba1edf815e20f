"""Serving the app as ``easel serve`` does, until SIGTERM or SIGINT, then stopping in order.

Connections are accepted through the connection guard (``transport.connections``).
A signal starts the stop, which ``shutdown_timeout`` bounds at each step:

1. the listening sockets close: no new connection is accepted;
2. every session ends (``close_connections`` in ``transport.app``): its client gets
   EVENT ``session.closed`` with reason ``server going away``, then close 1001;
3. requests still running get ``shutdown_timeout`` to finish, then are cancelled;
4. the engine stops (the app's cleanup): actors stop, sessions are written back,
   the store closes. Durable jobs stay as they are, for the next start to take over.

``serve`` then returns, and ``easel serve`` exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from engine.settings import Settings
from transport.connections import GuardedRunner

__all__ = ["serve"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(
    app: web.Application,
    settings: Settings,
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
    access_log_class: type[AbstractAccessLogger],
    announce: Callable[[str], None],
) -> None:
    """Run ``app`` on ``settings.host``/``port`` until SIGTERM or SIGINT, then stop it.

    Blocks the calling (main) thread on a new event loop. Raises what the app's start
    raises (an ``EaselError`` when the engine cannot start, ``OSError`` when the
    address is taken).
    """
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(app, settings, access_log_class, announce))


async def _serve(
    app: web.Application,
    settings: Settings,
    access_log_class: type[AbstractAccessLogger],
    announce: Callable[[str], None],
) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    runner = GuardedRunner(app, access_log_class=access_log_class)
    # Heard from the first moment: a signal during a long start (migrations, the
    # engine's tree) stops it in order too, instead of killing the process.
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, _stop, stopping, sig)
    try:
        await runner.setup()  # a failed start is cleaned up too
        if not stopping.is_set():
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            announce(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        await stopping.wait()
        log.info("stopping: no new connections; sessions are told the server is going away")
    finally:
        await runner.cleanup()
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def _stop(stopping: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s received", sig.name)
    stopping.set()
