"""Per-key REST rate limits: a token bucket per API key (429 and ``Retry-After`` beyond).

Each non-admin key may make ``rate_burst`` requests at once and ``rate_limit`` a second
after that. Admin keys (the operator) are not limited. The first refusal of a run is
logged with the key and its rate; the following ones are not, until the key is back
under its rate.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Final

from aiohttp import web

from engine.errors import TooManyRequests
from transport.auth import PRINCIPAL
from transport.problem import Handler

__all__ = ["RATE_LIMITER", "RateLimiter", "rate_limit_middleware"]

log = logging.getLogger(__name__)

_MAX_KEYS: Final = 100_000
"""Buckets kept at most (least recently used dropped: a dropped bucket is full)."""


class RateLimiter:
    """Token buckets by key. Loop only."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float, bool]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of ``key``: 0 if allowed, else the seconds until one is back."""
        now = time.monotonic() if now is None else now
        tokens, last, refused = self._buckets.pop(key, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
            refused = False
        else:
            wait = (1.0 - tokens) / self.rate
            if not refused:
                log.warning("key %s is over its rate of %g requests/s: refused", key, self.rate)
            refused = True
        self._buckets[key] = (tokens, now, refused)
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.popitem(last=False)
        return wait


RATE_LIMITER: Final = web.AppKey("easel.rate_limiter", RateLimiter)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After auth: refuse a non-admin key over its rate with 429 and ``Retry-After``."""
    caller = request.get(PRINCIPAL)
    if caller is not None and caller.key_id is not None and not caller.admin:
        limiter = request.app[RATE_LIMITER]
        wait = limiter.take(caller.key_id)
        if wait > 0:
            raise TooManyRequests(
                f"over the rate of {limiter.rate:g} requests/s for this key", retry_after=wait
            )
    return await handler(request)
