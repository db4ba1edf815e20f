"""``/api/v1/keys``: issue, list and revoke API keys (admin only).

=======  ======================  ===============================================
GET      /api/v1/keys            a page of keys (never their secrets)
POST     /api/v1/keys            ``{"name", "role"}``: 201 with the token, once
DELETE   /api/v1/keys/{key_id}   204; the key fails from the next request on
=======  ======================  ===============================================
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.storage import ApiKey, NewApiKey
from transport.auth import Role, requires
from transport.keys import STORE
from transport.rest.bodies import json_response, page_response, paging, read_body

__all__ = ["KEYS", "describe", "routes"]

routes = web.RouteTableDef()

KEYS = "/api/v1/keys"


def describe(key: ApiKey) -> dict[str, Any]:
    """A key as the API shows it: never its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at.isoformat(),
    }


@routes.get(KEYS)
@requires(Role.ADMIN)
async def list_keys(request: web.Request) -> web.Response:
    limit, offset = paging(request)
    page = await request.app[STORE].api_keys.list(limit=limit, offset=offset)
    return page_response((describe(key) for key in page.items), page.total, limit, offset)


@routes.post(KEYS)
@requires(Role.ADMIN)
async def create_key(request: web.Request) -> web.Response:
    new = await read_body(request, NewApiKey)
    key, token = await request.app[STORE].api_keys.create(new)
    return json_response({**describe(key), "token": token}, status=201)


@routes.delete(KEYS + "/{key_id}")
@requires(Role.ADMIN)
async def revoke_key(request: web.Request) -> web.Response:
    await request.app[STORE].api_keys.delete(request.match_info["key_id"])
    return web.Response(status=204)
