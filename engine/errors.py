"""One error hierarchy for the whole engine.

Every error a client can see has a stable ``code`` (used in problem+json bodies and
in WebSocket ERROR frames) and an HTTP ``status``::

    EaselError                  internal          500
    ├── NotFound                not_found         404
    ├── Conflict                conflict          409
    ├── Invalid                 invalid           422
    │   ├── BadParams           bad_params        422
    │   └── BadContent          bad_content       422
    ├── Unauthorized            unauthorized      401
    ├── Forbidden               forbidden         403
    ├── PayloadTooLarge         too_large         413
    ├── UnsupportedMediaType    unsupported_media_type 415
    ├── Overloaded              overloaded        503 (retry_after)
    │   └── MailboxFull         overloaded        503
    ├── Unavailable             unavailable       503
    ├── PipelineError           pipeline_error    500
    ├── SessionClosed           session_closed    410
    └── ActorError              actor_error       500
        ├── ActorStopped        actor_stopped     503
        ├── ActorCrashed        actor_crashed     500
        ├── AskTimeout          timeout           504
        └── Undeliverable       undeliverable     503

An ``EaselError`` raised by an actor's handler is an error about *one message*: it is
answered to the sender and the actor lives on. Any other exception means the actor's
state can't be trusted: the actor crashes and its supervisor decides.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ActorCrashed",
    "ActorError",
    "ActorStopped",
    "AskTimeout",
    "BadContent",
    "BadParams",
    "Conflict",
    "EaselError",
    "Forbidden",
    "Invalid",
    "MailboxFull",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PipelineError",
    "SessionClosed",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Undeliverable",
    "UnsupportedMediaType",
]


class EaselError(Exception):
    """Base of every error the engine reports to a client."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.title
        self.extra: dict[str, Any] = extra
        super().__init__(self.message)


class NotFound(EaselError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(EaselError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Invalid(EaselError):
    code = "invalid"
    status = 422
    title = "Invalid input"


class BadParams(Invalid):
    code = "bad_params"
    title = "Bad parameters"


class BadContent(Invalid):
    code = "bad_content"
    title = "Content could not be decoded"


class Unauthorized(EaselError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(EaselError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class PayloadTooLarge(EaselError):
    """A body (or the part of it that counts) is larger than the limit in force."""

    code = "too_large"
    status = 413
    title = "Payload too large"


class RequestTimeout(EaselError):
    """A request body did not arrive in time (a client sending it too slowly)."""

    code = "request_timeout"
    status = 408
    title = "Request timeout"


class UnsupportedMediaType(EaselError):
    """A body, or the content in it, is of a type the endpoint does not take."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class Overloaded(EaselError):
    """Too much work right now; the caller should retry after ``retry_after`` seconds."""

    code = "overloaded"
    status = 503
    title = "Overloaded"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class TooManyRequests(EaselError):
    """A caller is over its rate; it may retry after ``retry_after`` seconds."""

    code = "too_many_requests"
    status = 429
    title = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class MailboxFull(Overloaded):
    title = "Mailbox full"


class Unavailable(EaselError):
    code = "unavailable"
    status = 503
    title = "Service unavailable"


class PipelineError(EaselError):
    code = "pipeline_error"
    status = 500
    title = "Pipeline failed"


class SessionClosed(EaselError):
    code = "session_closed"
    status = 410
    title = "Session closed"


class ActorError(EaselError):
    code = "actor_error"
    title = "Actor error"


class ActorStopped(ActorError):
    code = "actor_stopped"
    status = 503
    title = "Actor is stopped"


class ActorCrashed(ActorError):
    code = "actor_crashed"
    title = "Actor crashed while handling the message"


class AskTimeout(ActorError):
    code = "timeout"
    status = 504
    title = "No reply in time"


class Undeliverable(ActorError):
    code = "undeliverable"
    status = 503
    title = "Message could not be delivered"
