"""An engine at rest: the CPU it spends with nobody calling, against a bare aiohttp echo.

Run from the repository root::

    .venv/bin/python -m ops.bench.idle [--seconds 30] [--servers 0]

Both servers run as subprocesses (``easel serve`` on its embedded defaults, with its
built-in pipelines, and ``ops.bench.echo``), started together and left alone; each
one's CPU time over the same ``--seconds`` is read from ``/proc`` (Linux) and printed
as a share of one core. ``--servers N`` first registers N fake ComfyUI servers
(``ops.fakecomfy``, in this process) with the engine, whose health checks then run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from ops.bench.compare import cpu_seconds
from ops.bench.servers import spawned
from ops.fakecomfy import FakeConfig, running_fake


async def main(seconds: float, servers: int) -> tuple[float, float]:
    """``(easel, echo)`` CPU in percent of one core over ``seconds``, both idle."""
    async with AsyncExitStack() as stack:
        easel = await stack.enter_async_context(spawned("easel"))
        echo = await stack.enter_async_context(spawned("echo"))
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="easel-idle-")))
        async with aiohttp.ClientSession() as http:
            for index in range(servers):
                fake = await stack.enter_async_context(
                    running_fake(FakeConfig(base_dir=base / f"f{index}"))
                )
                body = {"name": f"f{index}", "url": fake.url}
                async with http.post(easel.url + "/api/v1/comfyui/servers", json=body) as answer:
                    answer.raise_for_status()
        await asyncio.sleep(3.0)  # past the start's own work
        start = [cpu_seconds(easel.pid), cpu_seconds(echo.pid)]
        await asyncio.sleep(seconds)
        used = [cpu_seconds(easel.pid) - start[0], cpu_seconds(echo.pid) - start[1]]
    return used[0] / seconds * 100, used[1] / seconds * 100


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--servers", type=int, default=0)
    args = parser.parse_args()
    easel, echo = asyncio.run(main(args.seconds, args.servers))
    print(f"idle for {args.seconds:g} s, {args.servers} ComfyUI server(s) registered")
    print(f"   echo     {echo:6.2f} % of a core")
    print(f"   Easel    {easel:6.2f} % of a core   (+{easel - echo:.2f} points)")


if __name__ == "__main__":
    run()
