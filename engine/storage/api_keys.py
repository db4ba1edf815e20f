"""API keys: the secret is shown once at creation; only its SHA-256 is stored.

A token reads ``<key id>.<secret>``. The secret is 256 random bits, so a plain
SHA-256 (no salt, no stretching) can't be reversed or guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from engine.errors import Unauthorized
from engine.storage.records import ApiKey, NewApiKey, Page
from engine.storage.repository import Repository
from engine.storage.table import TableSpec, can_exist

__all__ = ["API_KEYS", "ApiKeys"]

API_KEYS = TableSpec("api_keys", ApiKey, unique=(("name",),))
_REFUSED = "invalid API key"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys(Repository[ApiKey]):
    """Issue, verify, list and revoke (``delete``) API keys."""

    async def create(self, new: NewApiKey) -> tuple[ApiKey, str]:
        """Issue a key; returns its record and the token (the only time it is known).

        Raises ``Conflict`` if the name is taken.
        """
        secret = secrets.token_urlsafe(32)
        key = await self._create(secret_hash=_hash(secret), **new.model_dump())
        return key, f"{key.id}.{secret}"

    async def verify(self, token: str) -> ApiKey:
        """The key a token belongs to.

        Raises ``Unauthorized`` for any bad token, with one message whatever is
        wrong with it, so a caller can't tell which key ids exist.
        """
        key_id, _, secret = token.partition(".")
        if not key_id or not secret:
            raise Unauthorized(_REFUSED)
        if not (can_exist(key_id) and secret.isascii()):
            raise Unauthorized(_REFUSED)
        # ``find``, never ``get``: a get may answer from this process's record cache,
        # and a key revoked by another process (``easel apikey revoke``) must fail on
        # the very next request.
        async with self._op("verify"):
            page = await self._table.find({"id": key_id}, limit=1, offset=0)
        if not page.items:
            raise Unauthorized(_REFUSED)
        key = page.items[0]
        if not hmac.compare_digest(key.secret_hash, _hash(secret)):
            raise Unauthorized(_REFUSED)
        return key

    async def list(self, *, limit: int = 50, offset: int = 0) -> Page[ApiKey]:
        """A page of keys (hashes only), oldest first. Raises ``Invalid``."""
        return await self._list(limit, offset)

    async def any(self) -> bool:
        """Whether at least one key exists (uncached: another process may add one)."""
        async with self._op("list"):
            page = await self._table.find({}, limit=1, offset=0)
        return bool(page.items)
