"""The servers a benchmark runs against, and what it reads off them. Loop only.

A target is a base URL plus, when the benchmark started it, how to watch it: an
in-process server (Easel or echo, on a free port, sharing the benchmark's loop) or a
subprocess (``easel serve`` or ``python -m ops.bench.echo``, optionally on uvloop or
under pyinstrument) whose resident memory can be sampled from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from engine.settings import Settings
from ops.bench.echo import echo_app
from transport.app import create_app
from transport.connections import GuardedRunner

__all__ = [
    "Target",
    "ensure_pipeline",
    "in_process",
    "loop_lag",
    "parse_histogram",
    "quantile",
    "spawned",
]

LAG_METRIC = "easel_event_loop_lag_seconds"

# Runs ``python -m MODULE ARGS…`` with uvloop as the event loop policy.
UVLOOP_RUN = (
    "import runpy, sys, uvloop; uvloop.install(); sys.argv = sys.argv[1:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


@dataclass
class Target:
    """A server to load: ``kind`` is ``easel`` or ``echo``."""

    kind: str
    url: str
    pid: int | None = None
    rss: list[int] = field(default_factory=list)
    """Resident set size samples in bytes, while :meth:`sample_rss` runs."""

    async def sample_rss(self, every: float = 0.2) -> None:
        """Append the server process's RSS every ``every`` s until cancelled."""
        if self.pid is None:
            return
        while True:
            value = _rss(self.pid)
            if value is not None:
                self.rss.append(value)
            await asyncio.sleep(every)


def _rss(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def in_process(kind: str, settings: Mapping[str, Any] | None = None) -> AsyncIterator[Target]:
    """Serve Easel (embedded defaults, a temporary data dir) or echo on a free port."""
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as data_dir:
        if kind == "easel":
            # the frame path is measured, not auth: on loopback, with auth off
            values = {"insecure": True, **(settings or {})}
            app = create_app(Settings(data_dir=Path(data_dir), **values), announce=lambda _: None)
            runner: web.AppRunner = GuardedRunner(app)  # as ``easel serve`` accepts
        else:
            runner = web.AppRunner(echo_app(), handle_signals=False)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield Target(kind, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def spawned(
    kind: str,
    settings: Mapping[str, Any] | None = None,
    *,
    loop: str = "asyncio",
    profile: Path | None = None,
    tree: Path | None = None,
) -> AsyncIterator[Target]:
    """Run Easel (``easel serve``) or echo as a subprocess; stop it with SIGINT after.

    ``loop="uvloop"`` installs uvloop first; ``profile`` runs it under pyinstrument
    and writes a text report there when it stops; ``tree`` runs the code of another
    checkout (e.g. a ``git worktree`` of an older commit) with this interpreter.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as data_dir:
        values = {"insecure": True, **(settings or {})}  # loopback: the frame path, not auth
        env = {**os.environ, **{f"EASEL_{k.upper()}": str(v) for k, v in values.items()}}
        env["EASEL_LOG_LEVEL"] = env.get("EASEL_LOG_LEVEL", "WARNING")
        args = ["--port", str(port)]
        if kind == "easel":
            args = ["serve", *args, "--data-dir", data_dir]
        module = "transport.cli" if kind == "easel" else "ops.bench.echo"
        command = [sys.executable, "-m", module, *args]
        if kind == "easel":
            env["EASEL_EVENT_LOOP"] = loop
        elif loop == "uvloop":
            command = [sys.executable, "-c", UVLOOP_RUN, module, *args]
        if profile is not None:
            report = ["-r", "text", "--show-all", "-o", str(profile)]
            command = [sys.executable, "-m", "pyinstrument", *report, "-m", module, *args]
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, cwd=tree
        )
        url = f"http://127.0.0.1:{port}"
        async with running(proc, url + "/api/v1/health", grace=60):
            # pyinstrument runs the module in its own process: this pid is the server.
            yield Target(kind, url, pid=proc.pid)


@contextlib.asynccontextmanager
async def running(
    proc: asyncio.subprocess.Process, ready: str, *, grace: float = 30
) -> AsyncIterator[None]:
    """Wait until ``ready`` answers 200 (``RuntimeError`` if ``proc`` exits first or
    30 s pass); on the way out, SIGINT, then SIGKILL after ``grace`` seconds."""
    try:
        await _wait_serving(ready, proc)
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _wait_serving(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"{url}: the server exited early with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start within 30 s")


async def ensure_pipeline(
    http: aiohttp.ClientSession,
    url: str,
    name: str,
    *,
    kind: str | None = None,
    replicas: int = 1,
    max_batch: int | None = None,
    options: Mapping[str, Any] | None = None,
    hosting: str | None = None,
) -> None:
    """Create pipeline ``name`` via REST unless it exists; ``kind`` defaults to ``name``."""
    async with http.get(f"{url}/api/v1/pipelines/{name}") as response:
        if response.status == 200:
            return
    body = {
        "name": name,
        "kind": kind or name,
        "replicas": replicas,
        "options": dict(options or {}),
    }
    if max_batch is not None:
        body["max_batch"] = max_batch
    if hosting is not None:
        body["hosting"] = hosting
    async with http.post(f"{url}/api/v1/pipelines", json=body) as response:
        if response.status != 201:
            raise RuntimeError(
                f"creating pipeline {name}: {response.status} {await response.text()}"
            )


def parse_histogram(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` buckets of histogram ``name`` in Prometheus text."""
    buckets = []
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].rsplit("}", 1)
            le = dict(part.split("=", 1) for part in labels.split(","))["le"].strip('"')
            buckets.append((float(le), float(value)))
    return sorted(buckets)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile``: linear interpolation inside the bucket holding ``q``."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            span = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / span if span else 1.0)
        lower_le, lower_count = le, count
    return lower_le


async def loop_lag(http: aiohttp.ClientSession, target: Target) -> list[tuple[float, float]] | None:
    """The server's event-loop lag buckets now; ``None`` if it exposes none (echo)."""
    if target.kind != "easel":
        return None
    async with http.get(target.url + "/metrics") as response:
        return parse_histogram(await response.text(), LAG_METRIC)
