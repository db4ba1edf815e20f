"""Authentication and roles: every route declares the role it needs, one middleware checks.

A caller presents an API key as ``Authorization: Bearer <key>`` (or ``?token=`` where
a header can't be set: browsers' WebSockets, ``<img>``). A key has one role:

``admin``
    everything: pipelines, keys, ComfyUI servers, and every client's records.
``client``
    sessions, projects, media and jobs, only its own (another key's are ``404``).
``metrics``
    ``/metrics`` only.

A route declares its role with :func:`requires` under the route decorator::

    @routes.get("/api/v1/things/{id}")
    @requires(Role.CLIENT)
    async def get_thing(request: web.Request) -> web.Response:
        owner = principal(request).owner  # None for admin: sees every thing
        ...

:func:`auth_middleware` reads the declaration off the matched route, so a path can't
reach a handler without its check; a route without one is admin-only (and a test
fails). WebSocket endpoints declare ``socket=True``: they authenticate themselves
after the upgrade, so a refusal is an ERROR frame and a 1008 close. With
``insecure`` set every caller is admin and nothing is checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import StrEnum
from typing import Final, TypeVar

from aiohttp import web

from engine.errors import Forbidden, Unauthorized
from engine.storage import ApiKey
from transport.keys import ENGINE, STORE
from transport.problem import Handler

__all__ = [
    "PRINCIPAL",
    "Principal",
    "Role",
    "RouteRole",
    "auth_middleware",
    "authenticate",
    "bearer_token",
    "principal",
    "requires",
    "role_of",
]


class Role(StrEnum):
    """What a route needs: no key (``public``), or a key of a role that covers it."""

    PUBLIC = "public"
    CLIENT = "client"
    METRICS = "metrics"
    ADMIN = "admin"


@dataclasses.dataclass(frozen=True, slots=True)
class RouteRole:
    """A route's declaration: its role, and whether it checks for itself (sockets)."""

    role: Role
    socket: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id (``None`` when auth is off) and its role."""

    key_id: str | None
    role: str

    @property
    def admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def owner(self) -> str | None:
        """The owner to filter by: ``None`` (everything) for admin, the key otherwise."""
        return None if self.admin else self.key_id

    def may(self, role: Role) -> bool:
        """Whether this caller may use a route that needs ``role``."""
        return role is Role.PUBLIC or self.admin or self.role == role

    def owns(self, owner: str | None) -> bool:
        """Whether a record owned by ``owner`` is this caller's to see."""
        return self.admin or (owner is not None and owner == self.key_id)


ANONYMOUS_ADMIN: Final = Principal(None, Role.ADMIN)
PRINCIPAL: Final = web.RequestKey("easel.principal", Principal)

_ATTRIBUTE: Final = "__easel_role__"

F = TypeVar("F", bound=Callable[..., object])


def requires(role: Role, *, socket: bool = False) -> Callable[[F], F]:
    """Declare the role a route handler needs (put it under the route decorator)."""

    def declare(handler: F) -> F:
        setattr(handler, _ATTRIBUTE, RouteRole(role, socket))
        return handler

    return declare


def role_of(handler: object) -> RouteRole | None:
    """The declaration on a handler, if it has one."""
    declared = getattr(handler, _ATTRIBUTE, None)
    return declared if isinstance(declared, RouteRole) else None


def bearer_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Bearer …`` or the ``token`` query parameter."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.query.get("token") or None


async def authenticate(request: web.Request) -> Principal:
    """The caller, from its API key. Raises ``Unauthorized`` without a valid one."""
    if request.app[ENGINE].settings.insecure:
        return ANONYMOUS_ADMIN
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
    key: ApiKey = await request.app[STORE].api_keys.verify(token)
    return Principal(key.id, key.role)


def principal(request: web.Request) -> Principal:
    """The caller the middleware authenticated (admin when auth is off).

    Raises ``Unauthorized`` on a route that authenticated no one (a public one).
    """
    caller = request.get(PRINCIPAL)
    if not isinstance(caller, Principal):
        raise Unauthorized("this route authenticated no caller")
    return caller


def check(caller: Principal, role: Role) -> None:
    """Raise ``Forbidden`` unless ``caller`` may use a route that needs ``role``."""
    if not caller.may(role):
        raise Forbidden(f"this needs an {role} key; yours is {caller.role}")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the matched route's declared role: 401 without a valid key, 403 for a
    key of the wrong role (both problem+json)."""
    match = request.match_info
    if match.http_exception is not None:
        return await handler(request)  # no route: 404/405 tell nothing
    declared = role_of(match.route.handler) or RouteRole(Role.ADMIN)
    if declared.role is Role.PUBLIC or declared.socket:
        return await handler(request)
    caller = await authenticate(request)
    check(caller, declared.role)
    request[PRINCIPAL] = caller
    return await handler(request)
