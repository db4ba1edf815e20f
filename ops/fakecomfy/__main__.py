"""Run a fake ComfyUI server: ``python -m ops.fakecomfy --host 127.0.0.1 --port 8188``.

It serves until interrupted (Ctrl-C). SIGTERM and SIGKILL end it at once, as they
end a real server; ``POST /_fake/die`` makes it exit by itself (status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ops.fakecomfy.app import registry
from ops.fakecomfy.config import MODEL_FOLDERS, FakeConfig, Faults
from ops.fakecomfy.server import FakeComfy

__all__ = ["main", "parse"]


def _models(values: Sequence[str]) -> dict[str, list[str]]:
    catalog: dict[str, list[str]] = {}
    for value in values:
        folder, sep, names = value.partition("=")
        if not sep or folder not in MODEL_FOLDERS:
            raise argparse.ArgumentTypeError(
                f"--model wants FOLDER=NAME[,NAME...] with FOLDER one of {', '.join(MODEL_FOLDERS)}"
            )
        catalog.setdefault(folder, []).extend(n for n in names.split(",") if n)
    return catalog


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.fakecomfy",
        description="A fake ComfyUI 0.28 server (no GPU, no weights): the real HTTP and "
        "WebSocket API, image nodes run on Pillow, faults on demand.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument(
        "--base-dir",
        type=Path,
        help="holds input/, output/ and temp/ (default: <tmp>/fakecomfy-<port>, kept between runs)",
    )
    p.add_argument("--input-dir", type=Path)
    p.add_argument("--output-dir", type=Path)
    p.add_argument("--temp-dir", type=Path, help="wiped at every start, as a real server does")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FOLDER=NAME[,NAME...]",
        help="add to the model catalog, e.g. checkpoints=sd15.safetensors (repeatable)",
    )
    p.add_argument(
        "--nodes",
        help=f"comma-separated node types to offer (default: all of {', '.join(registry())})",
    )
    p.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB")
    p.add_argument("--max-history", type=int, default=10000)
    p.add_argument(
        "--no-example-image", action="store_true", help="do not create input/example.png"
    )
    faults = p.add_argument_group("faults (all can be changed later with POST /_fake/faults)")
    faults.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="slow: every node reports progress steps, each this long",
    )
    faults.add_argument("--slow-steps", type=int, default=4)
    faults.add_argument("--hang", action="store_true", help="accept prompts, never finish them")
    faults.add_argument(
        "--die-at-node", type=int, metavar="N", help="crash when the N-th node execution starts"
    )
    faults.add_argument(
        "--restart-after",
        type=float,
        metavar="SECONDS",
        help="after a crash, come back in-process instead of exiting",
    )
    faults.add_argument(
        "--drop-ws-at-node",
        type=int,
        metavar="N",
        help="drop every WebSocket when the N-th node execution starts",
    )
    faults.add_argument(
        "--reject",
        type=int,
        metavar="STATUS",
        help="answer requests with this status (e.g. 500, 503)",
    )
    faults.add_argument(
        "--reject-path",
        action="append",
        default=[],
        metavar="PREFIX",
        help="reject only paths starting with PREFIX (repeatable)",
    )
    faults.add_argument(
        "--reject-count", type=int, metavar="N", help="reject only the next N requests"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def parse(argv: Sequence[str] | None = None) -> FakeComfy:
    """The fake the command line describes (not started)."""
    p = parser()
    args = p.parse_args(argv)
    try:
        models = _models(args.model)
        nodes = [n for n in args.nodes.split(",") if n] if args.nodes else None
        if nodes is not None:
            registry(nodes)
    except (argparse.ArgumentTypeError, ValueError) as err:
        p.error(str(err))
    faults = Faults(
        reject_status=args.reject,
        reject_paths=tuple(args.reject_path),
        reject_count=args.reject_count,
        hang=args.hang,
        step_delay=args.step_delay,
        slow_steps=args.slow_steps,
        die_at_node=args.die_at_node,
        restart_after=args.restart_after,
        drop_ws_at_node=args.drop_ws_at_node,
    )
    base = args.base_dir or Path(tempfile.gettempdir()) / f"fakecomfy-{args.port}"
    config = FakeConfig(
        base_dir=base,
        input_dir=args.input_dir,
        output_dir=args.output_dir,
        temp_dir=args.temp_dir,
        models=models,
        node_types=nodes,
        max_upload_size=round(args.max_upload_size * 1024 * 1024),
        max_history=args.max_history,
        example_image=not args.no_example_image,
        faults=faults,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(message)s")
    return FakeComfy(config, host=args.host, port=args.port, exit_on_die=True)


async def serve(fake: FakeComfy) -> None:
    await fake.start()
    print(f"fake ComfyUI on {fake.url}  (files in {fake.dirs.input.parent})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    fake = parse(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(fake))


if __name__ == "__main__":
    main()
