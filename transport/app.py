"""The composition root: ``create_app(settings)`` builds the engine, its tree and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from actors.tree import root_children
from engine.engine import Engine
from engine.settings import Settings
from transport.keys import ENGINE
from transport.problem import error_middleware
from transport.rest import health

__all__ = ["create_app"]


def create_app(settings: Settings) -> web.Application:
    """Build the aiohttp application; the engine starts and stops with it."""
    app = web.Application(middlewares=[error_middleware], client_max_size=8 * 1024 * 1024)
    engine = Engine(settings, root_children())
    app[ENGINE] = engine
    app.add_routes(health.routes)

    async def engine_lifetime(_app: web.Application) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app.cleanup_ctx.append(engine_lifetime)
    return app
