"""A raw aiohttp WebSocket echo server: the baseline the benchmark measures Easel against.

It speaks just enough of the protocol (docs/protocol.md) for
:class:`transport.client.Client` to connect unchanged (the ``easel.v1`` subprotocol
and a WELCOME on connect), then sends back every binary message as it came.
Whatever Easel costs beyond this is the engine's: decoding, the drain, the session,
the pipeline hop, encoding RESULT.

Run: ``python -m ops.bench.echo --port 8090``. Handlers run on the loop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from transport.protocol import DEFAULT_LIMITS, SUBPROTOCOL, DrainStrategy, Limits, encode_welcome

__all__ = ["echo_app", "main"]


def echo_app(limits: Limits = DEFAULT_LIMITS) -> web.Application:
    """An application echoing binary messages on both realtime endpoints."""
    welcome = encode_welcome(
        session="echo",
        resume="",
        pipeline="echo",
        drain=DrainStrategy.ALL,
        params={},
        limits=limits,
    )

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), compress=False, max_msg_size=limits.max_frame
        )
        await ws.prepare(request)
        await ws.send_bytes(welcome)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/api/v1/ws", echo)
    app.router.add_get("/api/v1/sessions/{session_id}/ws", echo)
    app.router.add_get("/api/v1/health", health)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    web.run_app(echo_app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
