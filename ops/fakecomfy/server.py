"""A fake ComfyUI server that a test (or a user) starts, breaks and stops.

    async with running_fake(FakeConfig(models={"checkpoints": ["sd15.safetensors"]})) as fake:
        ...  # fake.url is the base URL, e.g. http://127.0.0.1:40123
        fake.update_faults(step_delay=0.2)  # slow
        fake.die()  # crash: queue, history and running job lost, connections dropped
        await fake.restart()  # back on the same port with empty memory, files kept

Each start is a new server lifetime (:class:`~ops.fakecomfy.app.FakeState`): a
crash throws the whole state away, as a real crash does, while the input and
output directories stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from ops.fakecomfy.app import FakeState, make_app
from ops.fakecomfy.config import FakeConfig, Faults, FaultSwitch
from ops.fakecomfy.control import control_routes
from ops.fakecomfy.files import Dirs
from ops.fakecomfy.routes import api_routes

__all__ = ["FakeComfy", "running_fake"]

log = logging.getLogger(__name__)


class FakeComfy:
    """One fake server on ``host:port`` (port 0: a free one, kept across restarts)."""

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        exit_on_die: bool = False,
    ) -> None:
        self.config = config or FakeConfig()
        self.host = host
        self.port = port
        self.exit_on_die = exit_on_die
        self.switch = FaultSwitch(self.config.faults)
        self._own_base: Path | None = None
        base = self.config.base_dir
        if base is None and None in (
            self.config.input_dir,
            self.config.output_dir,
            self.config.temp_dir,
        ):
            base = self._own_base = Path(tempfile.mkdtemp(prefix="fakecomfy-"))
        self.dirs = Dirs(
            Path(os.path.abspath(self.config.input_dir or Path(str(base)) / "input")),
            Path(os.path.abspath(self.config.output_dir or Path(str(base)) / "output")),
            Path(os.path.abspath(self.config.temp_dir or Path(str(base)) / "temp")),
        )
        self.state: FakeState | None = None
        self.alive = False
        self.lifetimes = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._later: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        """Start a new lifetime (empty memory, temp directory wiped); returns the URL."""
        self.dirs.create()
        shutil.rmtree(self.dirs.temp, ignore_errors=True)
        self.dirs.temp.mkdir(parents=True, exist_ok=True)
        example = self.dirs.input / "example.png"
        if self.config.example_image and not example.exists():
            Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(example)
        self.state = FakeState(
            self.config, self.dirs, self.switch, self._die_at_node, self.drop_websockets
        )
        app = make_app(self.state, self, api_routes, control_routes)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen()
        self.state.start()
        self.alive = True
        self.lifetimes += 1
        log.info("fake ComfyUI listening on %s (input %s)", self.url, self.dirs.input)
        return self.url

    async def _listen(self) -> None:
        assert self._runner is not None
        assert self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._runner.server, self.host, self.port, reuse_address=True
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop (dropping whatever is still connected) and remove the directories the
        fake made itself."""
        for task in list(self._later):
            task.cancel()
        if self.alive:
            self._crash()
        await self._cleanup()
        if self._own_base is not None:
            shutil.rmtree(self._own_base, ignore_errors=True)

    async def _cleanup(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def die(self, restart_after: float | None = None) -> None:
        """Crash now: stop listening, drop every connection without a goodbye
        (WebSocket clients see 1006), lose the queue, history and running job.
        ``restart_after`` seconds later a new lifetime starts on the same port."""
        if self.exit_on_die and restart_after is None:
            logging.shutdown()
            os._exit(1)
        if not self.alive:
            return
        self._crash()
        if restart_after is not None:
            self._spawn(self._restart_later(restart_after))

    def _die_at_node(self) -> None:
        self.die(self.faults.restart_after)

    def _crash(self) -> None:
        self.alive = False
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                if handler.transport is not None:
                    handler.transport.abort()
        if self.state is not None:
            self.state.kill()

    async def restart(self) -> str:
        """Crash if alive, then start a new lifetime on the same port."""
        if self.alive:
            self._crash()
        await self._cleanup()
        return await self.start()

    async def _restart_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.restart()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop accepting connections (open ones stay); for ``seconds`` if given."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if seconds is not None:
            self._spawn(self._accept_later(seconds))

    async def _accept_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.accept_connections()

    async def accept_connections(self) -> None:
        if self._server is None and self.alive:
            await self._listen()

    async def drop_websockets(self, code: int | None = None) -> None:
        """Drop every WebSocket; abruptly (1006 on the client) when ``code`` is None."""
        if self.state is not None:
            await self.state.hub.drop(code)

    # -- faults ------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.switch.faults

    def update_faults(self, **changes: Any) -> Faults:
        """Change some :class:`Faults` fields (``ValueError`` on a bad one)."""
        return self.switch.update(changes)

    def reset_faults(self) -> Faults:
        return self.switch.reset()

    def hang(self, on: bool = True) -> None:
        self.update_faults(hang=on)

    def slow(self, step_delay: float, steps: int = 4) -> None:
        self.update_faults(step_delay=step_delay, slow_steps=steps)

    def reject(
        self, status: int = 500, paths: tuple[str, ...] = (), count: int | None = None
    ) -> None:
        self.update_faults(reject_status=status, reject_paths=paths, reject_count=count)

    def die_at_node(self, count: int = 1, restart_after: float | None = None) -> None:
        self.update_faults(die_at_node=count, restart_after=restart_after)

    def interrupt(self) -> None:
        if self.state is not None:
            self.state.executor.interrupt()

    def describe(self) -> dict[str, Any]:
        state = self.state
        return {
            "alive": self.alive,
            "lifetimes": self.lifetimes,
            "faults": self.faults.to_json(),
            "queue_remaining": state.queue.remaining() if state else 0,
            "sockets": sorted(state.hub.sockets) if state else [],
            "nodes_started": state.executor.nodes_started if state else 0,
            "dirs": {k: str(v) for k, v in vars(self.dirs).items()},
        }


@contextlib.asynccontextmanager
async def running_fake(config: FakeConfig | None = None, **kwargs: Any) -> AsyncIterator[FakeComfy]:
    """A started :class:`FakeComfy` (``fake.url`` is its base URL), stopped on exit."""
    fake = FakeComfy(config, **kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
