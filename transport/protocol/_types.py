"""Protocol v1 vocabulary: constants, enums, limits and timings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeGuard, TypeVar

from engine.types import DrainStrategy

MAGIC: Final = 0xEA
VERSION: Final = 1
SUBPROTOCOL: Final = "easel.v1"
PRELUDE_SIZE: Final = 8


_E = TypeVar("_E", bound=IntEnum | StrEnum)


def member(members: Mapping[object, _E], value: object) -> _E | None:
    # A dict lookup is ten times faster than calling the enum. Header values come from
    # msgpack: only an exact str or int can name a member, and others may be unhashable.
    return members.get(value) if type(value) is str or type(value) is int else None


def is_uint(value: object) -> TypeGuard[int]:
    # bool is an int subclass; True is not a sequence number.
    return type(value) is int and value >= 0


def is_str_map(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether a value decoded from a header is a map with string keys."""
    # msgpack's strict_map_key already limits keys to str or bytes, at every depth.
    return isinstance(value, dict) and bytes not in map(type, value)


class FrameType(IntEnum):
    HELLO = 0x01
    WELCOME = 0x02
    FRAME = 0x10
    RESULT = 0x11
    PARAMS = 0x20
    CALL = 0x30
    REPLY = 0x31
    EVENT = 0x40
    ERROR = 0x7F


class ErrorCode(StrEnum):
    """Every error code of protocol v1 (ERROR ``code`` and REPLY ``error.code``)."""

    BAD_FRAME = "bad_frame"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    BINARY_ONLY = "binary_only"
    TOO_LARGE = "too_large"
    BAD_PARAMS = "bad_params"
    BAD_CONTENT = "bad_content"
    PIPELINE_ERROR = "pipeline_error"
    OVERLOADED = "overloaded"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SESSION_CLOSED = "session_closed"
    NOT_FOUND = "not_found"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    UNKNOWN_SESSION = 4404
    ALREADY_ATTACHED = 4409


class ContentType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"
    RGB8 = "raw/rgb8"
    RGBA8 = "raw/rgba8"

    @property
    def channels(self) -> int | None:
        """Bytes per pixel of a raw type; ``None`` for an encoded image."""
        if self is ContentType.RGB8:
            return 3
        return 4 if self is ContentType.RGBA8 else None


class CallMethod(StrEnum):
    SESSION_STATS = "session.stats"
    SESSION_PARAMS = "session.params"
    PIPELINE_INFO = "pipeline.info"
    JOB_SUBSCRIBE = "job.subscribe"


class EventName(StrEnum):
    PIPELINE_RESTARTING = "pipeline.restarting"
    PIPELINE_READY = "pipeline.ready"
    SESSION_EXPIRING = "session.expiring"
    SESSION_CLOSED = "session.closed"
    STATS = "stats"
    JOB_QUEUED = "job.queued"
    JOB_DISPATCHED = "job.dispatched"
    JOB_RUNNING = "job.running"
    JOB_PROGRESS = "job.progress"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"


FRAME_TYPES: Final[Mapping[object, FrameType]] = MappingProxyType({m: m for m in FrameType})
CONTENT_TYPES: Final[Mapping[object, ContentType]] = MappingProxyType({m: m for m in ContentType})
DRAINS: Final[Mapping[object, DrainStrategy]] = MappingProxyType({m: m for m in DrainStrategy})
ERROR_CODES: Final[Mapping[object, ErrorCode]] = MappingProxyType({m: m for m in ErrorCode})
CALL_METHODS: Final[Mapping[object, CallMethod]] = MappingProxyType({m: m for m in CallMethod})


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes one connection accepts, announced in WELCOME ``limits``.

    ``max_frame`` bounds a whole message (larger: close 1009), ``max_header`` its
    msgpack header; ``max_inflight`` is how many frames a client may have unanswered
    before the server stops reading (the bound of the ``all`` drain).
    """

    max_frame: int = 8 * 1024 * 1024
    max_header: int = 64 * 1024
    max_inflight: int = 8

    def __post_init__(self) -> None:
        for name, value in self.to_header().items():
            if not is_uint(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer")

    def to_header(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_header(cls, value: object) -> Limits:
        """Read WELCOME ``limits``; absent or malformed entries keep their defaults."""
        if not isinstance(value, dict):
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names and is_uint(v) and v > 0})


DEFAULT_LIMITS: Final = Limits()
