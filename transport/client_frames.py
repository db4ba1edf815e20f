"""What the protocol v1 client reads off the socket, and the errors it raises.

``Welcome``, ``Result`` and ``Event`` are built from decoded frames; ``ClientError``
and its kinds are what :class:`transport.client.Client` raises (see its docstring).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transport.protocol import (
    Frame,
    FrameTimings,
    Limits,
)

__all__ = [
    "ClientError",
    "ConnectionClosed",
    "Event",
    "HandshakeError",
    "Result",
    "ServerError",
    "Welcome",
    "credit_of",
]


class ClientError(Exception):
    """Base of every error this client raises."""


class HandshakeError(ClientError):
    """The server refused the WebSocket upgrade or sent no WELCOME."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerError(ClientError):
    """The server reported an error: an ERROR frame, or a REPLY ``error``."""

    def __init__(
        self, code: str, message: str, *, seq: int | None = None, fatal: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.seq = seq
        self.fatal = fatal

    @classmethod
    def from_frame(cls, frame: Frame) -> ServerError:
        h = frame.header
        seq = h.get("seq")
        return cls(
            str(h.get("code", "internal")),
            str(h.get("message", "")),
            seq=seq if type(seq) is int else None,
            fatal=h.get("fatal") is True,
        )


class ConnectionClosed(ClientError):
    """The connection is closed; ``code`` is the WebSocket close code if one was sent."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed (code {code})")
        self.code = code


@dataclass(frozen=True, slots=True)
class Welcome:
    """The session the server attached this connection to."""

    session: str
    resume: str
    pipeline: str
    drain: str
    params: dict[str, Any]
    limits: Limits
    credit: int | None = None
    """The window granted (``None``: the server grants none)."""

    @classmethod
    def from_frame(cls, frame: Frame) -> Welcome:
        h = frame.header
        return cls(
            session=str(h.get("session", "")),
            resume=str(h.get("resume", "")),
            pipeline=str(h.get("pipeline", "")),
            drain=str(h.get("drain", "")),
            params=dict(h.get("params") or {}),
            limits=Limits.from_header(h.get("limits")),
            credit=credit_of(h),
        )


@dataclass(frozen=True, slots=True)
class Result:
    """One RESULT: the answer to the frame ``seq``. ``payload`` views the message."""

    seq: int
    ct: str
    payload: memoryview
    timings: FrameTimings | None
    superseded: int = 0
    w: int | None = None
    h: int | None = None
    credit: int | None = None

    @classmethod
    def from_frame(cls, frame: Frame) -> Result:
        h = frame.header
        t = h.get("t")
        timings = None
        if isinstance(t, dict):
            timings = FrameTimings(
                float(t.get("queue_ms", 0.0)),
                float(t.get("pipeline_ms", 0.0)),
                float(t.get("total_ms", 0.0)),
            )
        return cls(
            seq=int(h.get("seq", -1)),
            ct=str(h.get("ct", "")),
            payload=frame.payload,
            timings=timings,
            superseded=int(h.get("superseded", 0)),
            w=h.get("w"),
            h=h.get("h"),
            credit=credit_of(h),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One EVENT, e.g. ``pipeline.restarting``."""

    name: str
    data: dict[str, Any]


def credit_of(header: Mapping[str, Any]) -> int | None:
    credit = header.get("credit")
    return credit if type(credit) is int and credit > 0 else None
