"""Engine settings: validated once at start, from flags, then environment, then defaults."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["Settings", "SettingsError", "is_loopback", "load_settings"]

ENV_PREFIX = "EASEL_"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False


class SettingsError(ValueError):
    """Raised when a setting has a bad value; the message names each bad setting."""


class Settings(BaseModel):
    """Everything an engine needs to start. Immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    media_dir: Path | None = None
    """Where media bytes are kept; ``None``: ``<data_dir>/media``. Engine nodes that
    share one database need one shared directory here (each node's data dir is its
    own), so that every node serves every output's bytes."""
    database_url: str | None = None
    """SQLAlchemy URL; ``None`` means SQLite at ``<data_dir>/easel.db``."""
    store_backend: Literal["sql", "mongodb"] = "sql"
    """Where repositories live: the SQL database above, or MongoDB at ``mongodb_uri``."""
    mongodb_uri: str = "mongodb://127.0.0.1:27017"
    mongodb_database: str = "easel"
    db_pool_size: int = Field(default=5, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_timeout: float = Field(default=5.0, gt=0)
    """Seconds one database operation may take (pool wait included) before ``Unavailable``."""
    db_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    """Records per table kept in memory for ``get``; only with the embedded SQLite
    default (one process owns that database). 0 turns the cache off."""
    db_auto_migrate: bool | None = None
    """Apply SQL migrations at start; ``None`` means only for SQLite (the embedded default)."""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``text``: one readable line per record; ``json``: one JSON object per line, with
    the request, session and job it is about (engine/logcontext.py)."""
    insecure: bool = False
    """Turn authentication off (every caller is admin). Refused unless ``host`` is a
    loopback address; the engine warns loudly at start."""
    allowed_origins: str = ""
    """Comma-separated origins (``https://app.example``) besides the engine's own that
    browsers may call from (CORS) and open WebSockets from; ``*`` allows any."""
    max_body: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest JSON request body in bytes (413 beyond)."""
    rate_limit: float = Field(default=50.0, gt=0)
    """REST requests per second per API key, sustained (429 beyond)."""
    rate_burst: int = Field(default=200, ge=1)
    """REST requests a key may make at once before ``rate_limit`` applies."""
    max_sessions_per_key: int = Field(default=32, ge=1)
    """Sessions one client key may have open at once."""
    max_pipelines: int = Field(default=32, ge=1, le=1024)
    max_replicas: int = Field(default=8, ge=1, le=64)
    """Replicas one pipeline may have."""
    keepalive_timeout: float = Field(default=15.0, gt=0)
    """Seconds an idle keep-alive HTTP connection is held open."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """``uvloop`` (measured faster on the frame path) or the standard ``asyncio`` loop.
    uvloop is optional (there is none on Windows): where it is missing the default falls
    back to ``asyncio``, and ``uvloop`` asked for explicitly is refused at start."""
    shutdown_timeout: float = Field(default=10.0, gt=0)
    """Seconds a stopping engine gives its open requests and in-flight frames to finish
    (and each actor to stop) before it cuts them off."""
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    """Open TCP connections the engine holds at most. Past it, a new connection takes
    the place of one still waiting for its first request head, or gets a bare 503."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a new connection has to send a complete first request head (slow or
    idle clients are closed)."""
    loop_lag_interval: float = Field(default=0.1, gt=0)
    max_sessions: int = Field(default=256, ge=1)
    session_idle_timeout: float = Field(default=60.0, gt=0)
    """Seconds a detached session waits for its client to resume before it ends."""
    drain_capacity: int = Field(default=16, ge=1, le=4096)
    """Frames an ``all`` drain holds before the socket stops being read."""
    max_inflight: int = Field(default=4, ge=1, le=64)
    """Frames an ``all`` session may have in its pipeline at once (answers still go
    out in ``seq`` order). A ``latest`` session always has one, so the frame that
    waits is the one that can still be superseded."""
    frame_timeout: float = Field(default=30.0, gt=0)
    hello_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection to ``/api/v1/ws`` has to send its HELLO."""
    max_frame: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_header: int = Field(default=64 * 1024, ge=64)
    max_media_bytes: int = Field(default=32 * 1024 * 1024, ge=1, le=256 * 1024 * 1024)
    """Largest image ``POST /api/v1/media`` stores; a bigger upload is refused (413)
    as soon as it passes the limit. At most 256 MiB, the media store's own limit."""
    pipelines: str = "passthrough,imagefx"
    """Built-in pipelines started at boot (name = kind), comma-separated."""
    node_id: str | None = Field(default=None, min_length=1, max_length=40)
    """This engine node's name in job leases; ``None``: a fresh one per start."""
    comfy_health_interval: float = Field(default=2.0, gt=0)
    """Seconds between health checks (``/system_stats`` and ``/queue``) of each server."""
    comfy_catalog_interval: float = Field(default=60.0, gt=0)
    """Seconds between refreshes of each server's model catalog."""
    comfy_reconnect_max: float = Field(default=10.0, gt=0)
    """Longest wait between two attempts to reopen a server's WebSocket."""
    comfy_timeout: float = Field(default=10.0, gt=0)
    """Seconds one HTTP call to a ComfyUI server may take."""
    job_lease: float = Field(default=15.0, gt=0)
    """Seconds a node's claim on a job lasts unless renewed (renewed every third of it)."""
    job_max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts a job gets by default before it fails (a lost server costs one)."""
    job_reconcile_interval: float = Field(default=2.0, gt=0)
    """Seconds between checks of in-flight jobs against their server's history and queue."""
    job_lost_after: float = Field(default=30.0, gt=0)
    """Seconds a server may fail to answer about a job in flight before the job counts
    as lost and is queued again. A server that refuses connections (nothing listens:
    a ComfyUI that died lost its queue) loses its jobs at once; one that is only slow
    or unreachable may still be running them, and a job queued again too early would
    run twice."""
    max_queued_jobs_per_key: int = Field(default=1000, ge=1)
    """Jobs one client key may have queued, dispatched or running at once (a submit
    past it is refused, 503 with ``Retry-After``; a batch counts every seed)."""
    job_retention: float = Field(default=7 * 24 * 3600.0, ge=1)
    """Seconds a job (with its workflow and outputs) is kept after it was submitted:
    then it is deleted, or, if it has not ended by then, it ends ``expired`` and is
    kept that long again so its caller can see why."""
    retention_sweep_every: float = Field(default=60.0, gt=0)
    """Seconds between two sweeps for jobs and media whose retention ran out."""
    forwarded_headers: bool = True
    """Build the absolute links of Comfy API v2 answers from ``Forwarded`` /
    ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` when a request carries them (behind
    a reverse proxy); ``false`` uses the request's own scheme and ``Host``."""

    @field_validator("host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _insecure_only_on_loopback(self) -> Settings:
        if self.insecure and not is_loopback(self.host):
            raise ValueError(
                f"insecure (no authentication) is refused on {self.host!r}: bind a loopback"
                " address (127.0.0.1, ::1) or turn authentication on"
            )
        return self

    @property
    def origins(self) -> frozenset[str]:
        """The allowed origins besides the engine's own (``*`` for any)."""
        return frozenset(
            part.strip().rstrip("/") for part in self.allowed_origins.split(",") if part.strip()
        )

    @property
    def sql_url(self) -> str:
        """The database URL in force (the embedded SQLite file by default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'easel.db'}"


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings: explicit ``flags`` win over ``EASEL_*`` variables, which win over defaults.

    Raises ``SettingsError`` with one line per bad value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            source = "flag or " + ENV_PREFIX + name.upper()
            lines.append(f"{name} ({source}): {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
