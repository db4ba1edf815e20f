"""What the engine lends the plug-ins that ask for it.

Most kinds need nothing but their config. A kind that uses one of the engine's own
services (the ``comfyui`` kind runs frames on the ComfyUI fleet) says so with
``uses_context = True`` and is then built as ``Kind(config, context)``: the services
come in through its constructor, typed, never from a global. Such a kind runs in the
engine's process (``thread`` or ``loop`` hosting), where those services live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.comfyui.frames import FrameRouter

__all__ = ["PluginContext"]


@dataclass(frozen=True, slots=True)
class PluginContext:
    """The engine's services a plug-in may use; ``None`` where this engine has none."""

    comfyui: FrameRouter | None = None
    """Runs realtime frames on the ComfyUI fleet (:mod:`actors.comfyui.frames`)."""
