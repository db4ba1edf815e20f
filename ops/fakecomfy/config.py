"""What a fake server is given at start, and the faults it can be told to show.

:class:`FakeConfig` is fixed for the life of a server (directories, model catalog,
node types, limits). :class:`Faults` can change at any time, from the
:class:`~ops.fakecomfy.server.FakeComfy` methods or ``POST /_fake/faults``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MODEL_FOLDERS", "FakeConfig", "Faults"]

# The folder names a real 0.28 server lists at GET /models, in its order.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
    "background_removal",
    "frame_interpolation",
    "geometry_estimation",
    "optical_flow",
    "detection",
)


@dataclass
class FakeConfig:
    """A fake server's fixed settings.

    Directories left as ``None`` are created under ``base_dir`` (``input``,
    ``output``, ``temp``); a ``base_dir`` left as ``None`` is a new temporary
    directory. ``models`` maps a folder of :data:`MODEL_FOLDERS` to the file names it
    holds (the catalog shown by ``/models/{folder}`` and the loader combos in
    ``/object_info``). ``node_types`` limits the node classes the server knows
    (``None``: all of them).
    """

    base_dir: Path | None = None
    input_dir: Path | None = None
    output_dir: Path | None = None
    temp_dir: Path | None = None
    models: Mapping[str, Sequence[str]] = field(default_factory=dict)
    node_types: Sequence[str] | None = None
    max_upload_size: int = 100 * 1024 * 1024
    max_history: int = 10000
    example_image: bool = True
    """Write ``example.png`` into the input directory when it is missing, as a
    ComfyUI checkout ships one."""
    comfyui_version: str = "0.28.1"
    ram_total: int = 25276063744
    ram_free: int = 23882690560
    device_name: str = "cpu"
    device_type: str = "cpu"
    vram_total: int = 25276063744
    vram_free: int = 23882690560
    faults: Faults = field(default_factory=lambda: Faults())  # noqa: PLW0108 - defined below


@dataclass
class Faults:
    """Misbehaviour to show. The defaults are a healthy server.

    - ``reject_status``: answer requests with this status (500 gives the real
      server's plain-text 500 body), on paths starting with one of ``reject_paths``
      (``/api`` stripped; empty: every path of the real API, ``/ws`` included), for
      the next ``reject_count`` requests (``None``: until cleared).
    - ``hang``: a prompt that starts executing stops at its first node and never
      finishes (interrupts are ignored) until ``hang`` is cleared.
    - ``step_delay`` / ``slow_steps``: every node reports ``slow_steps`` progress
      steps and each step takes ``step_delay`` seconds (nodes that report progress
      of their own keep their step count and get the delay per step).
    - ``die_at_node``: die (lose queue, history and running job; drop every
      connection) when the N-th node execution from now starts, after its
      ``executing`` event. ``restart_after`` then brings the server back after that
      many seconds with empty memory, like a supervisor restarting a crashed
      ComfyUI (``None``: stay dead).
    - ``drop_ws_at_node``: drop every WebSocket abruptly when the N-th node
      execution from now starts; the job keeps running.
    """

    reject_status: int | None = None
    reject_paths: tuple[str, ...] = ()
    reject_count: int | None = None
    hang: bool = False
    step_delay: float = 0.0
    slow_steps: int = 4
    die_at_node: int | None = None
    restart_after: float | None = None
    drop_ws_at_node: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["reject_paths"] = list(self.reject_paths)
        return data

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (field name → value); raises ``ValueError`` on an
        unknown field or a value of the wrong type."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = [key for key in changes if key not in names]
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)} (known: {', '.join(names)})")
        checked = {key: _checked(key, value) for key, value in changes.items()}
        for key, value in checked.items():
            setattr(self, key, value)


def _checked(key: str, value: Any) -> Any:
    if key == "reject_paths":
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
            raise ValueError("reject_paths must be a list of path prefixes")
        return tuple(value)
    if key == "hang":
        if not isinstance(value, bool):
            raise ValueError("hang must be true or false")
        return value
    if key in ("step_delay", "restart_after"):
        if value is None and key == "restart_after":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a number >= 0")
        return float(value)
    if value is None and key != "slow_steps":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1")
    return value


class FaultSwitch:
    """The live :class:`Faults` of a server plus an event set whenever they change
    (the executor waits on it while hung)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._changed = asyncio.Event()

    def update(self, changes: Mapping[str, Any]) -> Faults:
        self.faults.update(changes)
        self.notify()
        return self.faults

    def reset(self) -> Faults:
        self.faults = Faults()
        self.notify()
        return self.faults

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()
