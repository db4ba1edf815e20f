"""The composition root: ``create_app(settings)`` builds the engine, its tree and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from actors.domain import start_domain, supervision_tree
from actors.sessions.messages import Close
from engine.engine import Engine
from engine.errors import EaselError
from engine.settings import Settings
from engine.storage import open_store
from transport import openapi, ws
from transport.auth import auth_middleware
from transport.keys import DOMAIN, ENGINE, STORE
from transport.problem import error_middleware
from transport.rest import comfyui, health, jobs, pipelines, projects, sessions

__all__ = ["create_app"]


def create_app(settings: Settings) -> web.Application:
    """Build the aiohttp application; the engine starts and stops with it."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=8 * 1024 * 1024
    )
    engine = Engine(settings, supervision_tree())
    app[ENGINE] = engine
    routes = (health, openapi, pipelines, projects, sessions, ws, comfyui, jobs)
    for module in routes:
        app.add_routes(module.routes)

    async def engine_lifetime(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings, engine.registry)
        app[STORE] = store
        engine.add_readiness_check("store", store.ping)
        try:
            await engine.start()
            try:
                app[DOMAIN] = await start_domain(engine, store)
                yield
            finally:
                await engine.stop()
                domain = app.get(DOMAIN)
                if domain is not None:
                    await domain.sessions.flush()
        finally:
            await store.close()

    async def close_connections(app: web.Application) -> None:
        # aiohttp waits for open handlers before cleanup: end sessions (1001) first.
        domain = app.get(DOMAIN)
        if domain is None:
            return
        for state in domain.sessions.states():
            try:
                await domain.sessions.ref(state.id).ask(Close(1001, "server going away"))
            except EaselError:
                continue

    app.cleanup_ctx.append(engine_lifetime)
    app.on_shutdown.append(close_connections)
    return app
