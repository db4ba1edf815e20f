"""Typed keys under which the app holds what its handlers need."""

from __future__ import annotations

from aiohttp import web

from actors.services import Services
from engine.engine import Engine
from engine.storage import Store

__all__ = ["ENGINE", "SERVICES", "STORE"]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
