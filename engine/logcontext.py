"""What a log line is about, and how log lines are written.

Three context variables say which request, session and job the code running now
serves: the transport binds ``request_id`` for each HTTP request, the WebSocket path
and the session actor bind ``session_id``, the ComfyUI job path binds ``job_id``.
``ContextFilter`` copies them onto every record (a value passed in ``extra=`` wins),
and ``JsonFormatter`` writes a record as one JSON object per line. ``configure_logging``
installs both on the root logger for ``easel serve``.

Context variables follow asyncio tasks: a task started while one is bound keeps it,
so an actor's task starts from ``detached()`` rather than from whatever request
happened to start it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

__all__ = [
    "FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "bind",
    "configure_logging",
    "current",
    "detached",
    "job_context",
    "log_context",
]

FIELDS: Final = ("request_id", "session_id", "job_id")
"""The context a log line carries, where there is one."""

_VARS: Final = {name: contextvars.ContextVar[str | None](name, default=None) for name in FIELDS}

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def current() -> dict[str, str]:
    """The fields bound in the running context (only those that are set). Any thread."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


def bind(**fields: str) -> None:
    """Bind ``fields`` (names from ``FIELDS``) for the rest of the running task or
    thread. For code that owns its task (a handler, an actor); elsewhere use
    ``log_context``. Raises ``KeyError`` for an unknown field."""
    for name, value in fields.items():
        _VARS[name].set(value)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Bind ``fields`` inside the ``with`` block, then restore what was bound before."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def job_context(job_id: str) -> _JobContext:
    """Bind ``job_id`` inside a ``with`` or ``async with`` block (so it can share an
    ``async with`` line with a lock). Enter and exit in the same task."""
    return _JobContext(job_id)


class _JobContext:
    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _VARS["job_id"].set(self._job_id)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _VARS["job_id"].reset(self._token)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def detached(**fields: str) -> contextvars.Context:
    """A copy of the running context with no log fields bound but ``fields``: what an
    actor's task starts from, so it does not speak for the request that started it."""
    context = contextvars.copy_context()
    for name in FIELDS:
        context.run(_VARS[name].set, fields.get(name))
    return context


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record it sees (``extra=`` values win). It
    runs in the logging caller's thread and task, where the context is the caller's."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


_RESERVED: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "time",
    "level",
    "logger",
    "exception",
    "stack",
}
"""Record attributes that are not ``extra=`` fields, and the line's own keys (an
``extra=`` field of one of those names can't overwrite them)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, the context fields that are set, anything passed in
    ``extra=``, and ``exception`` (the traceback's text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # a value orjson refuses (an integer past 64 bits …): as text
            return orjson.dumps({k: str(v) for k, v in line.items()}).decode()


def configure_logging(level: str, fmt: Literal["text", "json"] = "text") -> None:
    """Send the root logger's records to stderr at ``level``, as text lines or JSON
    lines, each with the context filter. Replaces handlers set up before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
