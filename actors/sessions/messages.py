"""The messages a session actor handles, and the ``Connection`` it answers through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from actors.plugins import FrameOut
from actors.sessions.drains import Drain, InboundFrame
from actors.sessions.state import SessionState
from engine.errors import EaselError
from engine.types import FrameTimings

__all__ = [
    "Attach",
    "Attachment",
    "Call",
    "Close",
    "Connection",
    "Describe",
    "Detach",
    "Expire",
    "PumpFailed",
    "SessionMessage",
    "UpdateParams",
]


class Connection(Protocol):
    """The session's view of its client; implemented by the transport. Loop only."""

    async def send_result(
        self,
        seq: int,
        out: FrameOut,
        timings: FrameTimings,
        superseded: int,
        credit: int | None = None,
    ) -> None:
        """RESULT for ``seq``; ``credit`` is the client's window from now on (frames it
        may have sent and not yet seen answered or superseded), if the server grants one."""
        ...

    async def send_error(
        self, error: EaselError, seq: int | None = None, fatal: bool = False
    ) -> None: ...

    async def send_event(self, name: str, data: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Attach:
    """Attach ``connection``; answered with the ``Attachment`` its reader feeds."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class Detach:
    """``connection`` is gone (ignored unless it is the attached one)."""

    connection: Connection


@dataclass(frozen=True, slots=True)
class UpdateParams:
    """Merge ``params`` into the session's params (validated); answered with the result."""

    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Describe:
    """Answered with the session's description (``SessionState.describe``)."""


@dataclass(frozen=True, slots=True)
class Call:
    """A CALL from the client: ``method`` with ``args``; answered with the REPLY's result."""

    method: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """End the session for good: its client gets EVENT ``session.closed``, then ``code``."""

    code: int = 1000
    reason: str = "session closed"
    finish: float = 0.0
    """Seconds the frames already in the pipeline get to be answered before the goodbye
    (the drain takes no more); 0: none."""


@dataclass(frozen=True, slots=True)
class Expire:
    """From the session's own idle timer: end it if it is still detached since then."""

    detached_at: float


@dataclass(frozen=True, slots=True)
class PumpFailed:
    """From the session's own frame pump: it died, so the incarnation must crash."""

    error: BaseException | None
    incarnation: int


SessionMessage = Attach | Detach | UpdateParams | Describe | Call | Close | Expire | PumpFailed


class Attachment:
    """The answer to ``Attach``: the connection's port into its session, where the
    reader puts frames (under ``all`` it waits there while the drain is full)."""

    __slots__ = ("_on_in", "credit", "drain", "state")

    def __init__(
        self,
        state: SessionState,
        drain: Drain,
        on_in: Callable[[], None],
        credit: int | None = None,
    ) -> None:
        self.state = state
        self.drain = drain
        self._on_in = on_in
        self.credit = credit
        """The window WELCOME grants (``SessionState.credit``), if any."""

    async def submit(self, frame: InboundFrame) -> None:
        """Hand a frame to the session; under ``all`` this waits while the drain is full."""
        await self.drain.put(frame)
        self.state.stats.frames_in += 1
        self._on_in()
