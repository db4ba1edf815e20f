"""What a session is, as it outlives its actor's incarnations: ``SessionState``.

A crashed session actor restarts with the same state (id, token, params, drain
strategy, stats), so its client can resume with the token and nothing it set is lost.
The stored form of a session (``engine.storage.SessionRecord``) is written from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.settings import Settings
from engine.types import DrainStrategy

__all__ = ["SessionState", "SessionStats"]


@dataclass
class SessionStats:
    frames_in: int = 0
    frames_out: int = 0
    superseded: int = 0
    errors: int = 0
    last_total_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "superseded": self.superseded,
            "errors": self.errors,
            "last_total_ms": self.last_total_ms,
        }


@dataclass
class SessionState:
    """Everything about a session that must survive its actor's restarts.

    ``params`` is replaced, never mutated, when it changes (the pump caches the
    parsed params by identity).
    """

    id: str
    token: str
    pipeline: str
    drain: DrainStrategy
    params: dict[str, Any]
    created_at: float
    stats: SessionStats = field(default_factory=SessionStats)
    attached: bool = False
    owner: str | None = None
    """The id of the API key that created the session (``None`` with auth off)."""

    def max_inflight(self, settings: Settings) -> int:
        """How many of this session's frames may be in its pipeline at once."""
        return settings.max_inflight if self.drain is DrainStrategy.ALL else 1

    def credit(self, settings: Settings) -> int:
        """The window granted to the client (WELCOME and RESULT ``credit``): how many
        frames it may have sent and not yet seen answered or superseded. Those in the
        pipeline, plus what the drain holds without superseding (``latest``: one) or
        making the reader wait (``all``: its capacity)."""
        if self.drain is DrainStrategy.ALL:
            return self.max_inflight(settings) + settings.drain_capacity
        return self.max_inflight(settings) + 1

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "drain": str(self.drain),
            "params": dict(self.params),
            "attached": self.attached,
            "created_at": self.created_at,
            "stats": self.stats.as_dict(),
        }
