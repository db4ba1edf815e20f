"""``/_fake/...``: the control routes, apart from the real API.

They let a test or a user drive a fake that runs in another process:

- ``GET /_fake/state``: alive, faults, queue size, sockets, node executions.
- ``POST /_fake/faults`` with some :class:`~ops.fakecomfy.config.Faults` fields:
  change them (400 ``{"error": ...}`` on a bad field); answers the faults.
- ``POST /_fake/reset``: back to a healthy server.
- ``POST /_fake/die`` ``{"restart_after": seconds?}``: crash now (the answer is
  sent first). A fake started from the command line exits unless
  ``restart_after`` is given.
- ``POST /_fake/drop_ws`` ``{"code": int?}``: drop every WebSocket (no code: no
  close frame at all).
- ``POST /_fake/refuse`` ``{"seconds": s}``: stop accepting connections for that
  long (open connections stay).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ops.fakecomfy.app import CONTROL

__all__ = ["control_routes"]

control_routes = web.RouteTableDef()


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as err:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"not JSON: {err}"})) from err
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}))
    return body


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{key} must be a number >= 0"}))
    return float(value)


@control_routes.get("/_fake/state")
async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].describe())


@control_routes.post("/_fake/faults")
async def faults(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        changed = request.app[CONTROL].update_faults(**body)
    except ValueError as err:
        return web.json_response({"error": str(err)}, status=400)
    return web.json_response(changed.to_json())


@control_routes.post("/_fake/reset")
async def reset(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL].reset_faults().to_json())


@control_routes.post("/_fake/die")
async def die(request: web.Request) -> web.StreamResponse:
    restart_after = _number(await _body(request), "restart_after")
    control = request.app[CONTROL]
    response = web.json_response({"dying": True, "restart_after": restart_after})
    await response.prepare(request)
    await response.write_eof()
    control.die(restart_after)
    return response


@control_routes.post("/_fake/drop_ws")
async def drop_ws(request: web.Request) -> web.Response:
    body = await _body(request)
    code = body.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return web.json_response({"error": "code must be an integer"}, status=400)
    await request.app[CONTROL].drop_websockets(code)
    return web.json_response({"dropped": True})


@control_routes.post("/_fake/refuse")
async def refuse(request: web.Request) -> web.Response:
    seconds = _number(await _body(request), "seconds")
    if seconds is None:
        return web.json_response({"error": "seconds is required"}, status=400)
    await request.app[CONTROL].refuse_connections(seconds)
    return web.json_response({"refusing_for": seconds})
