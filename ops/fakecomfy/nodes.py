"""Node types: what a node class is, what it is given when it runs, and its
``/object_info`` entry.

Node functions run in a worker thread and get a :class:`RunContext`; one that
reports progress calls ``ctx.progress``, which raises :class:`Interrupted` once an
interrupt is pending.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ops.fakecomfy.files import Dirs

__all__ = [
    "MAX_RESOLUTION",
    "Interrupted",
    "NodeEnv",
    "NodeResult",
    "NodeType",
    "Preview",
    "RunContext",
    "encode_image",
    "int_spec",
]

MAX_RESOLUTION = 16384
Preview = tuple[str, Image.Image]


class Interrupted(Exception):
    """An interrupt reached a node boundary or a progress callback."""


@dataclass(frozen=True)
class NodeEnv:
    """What node schemas and functions see of the server."""

    dirs: Dirs
    models: Mapping[str, Sequence[str]]


@dataclass
class RunContext:
    env: NodeEnv
    node_id: str
    prompt: dict[str, Any]
    extra_pnginfo: Any
    progress: Callable[[int, int, Preview | None], None]


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, list[Any]] | None = None


NodeFunction = Callable[[RunContext, dict[str, Any]], NodeResult]


@dataclass(frozen=True)
class NodeType:
    """One node class. ``inputs`` builds ``{"required": {...}, ...}`` at request time
    (combos list what is on disk or in the catalog); ``validate`` is the node's own
    input check (``True`` or an error text) and replaces the combo check for the
    ``validated`` inputs; ``is_changed`` feeds the cache key (``None`` result:
    constant)."""

    name: str
    display_name: str
    category: str
    inputs: Callable[[NodeEnv], dict[str, dict[str, Any]]]
    outputs: tuple[str, ...]
    function: NodeFunction
    output_node: bool = False
    output_names: tuple[str, ...] | None = None
    description: str = ""
    python_module: str = "nodes"
    validate: Callable[[NodeEnv, dict[str, Any]], bool | str] | None = None
    validated: tuple[str, ...] = ()
    is_changed: Callable[[NodeEnv, dict[str, Any]], Any] | None = None
    reports_progress: bool = False
    newer_api: bool = False
    search_aliases: tuple[str, ...] = field(default=())

    def info(self, env: NodeEnv) -> dict[str, Any]:
        """The ``/object_info`` entry."""
        spec = self.inputs(env)
        info: dict[str, Any] = {
            "input": spec,
            "input_order": {section: list(names) for section, names in spec.items()},
            "is_input_list": False,
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": list(self.output_names or self.outputs),
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
            "has_intermediate_output": False,
            "search_aliases": list(self.search_aliases),
        }
        if self.newer_api:
            info.update(
                output_tooltips=[None] * len(self.outputs),
                deprecated=False,
                experimental=False,
                dev_only=False,
                api_node=False,
                price_badge=None,
            )
        return info


def int_spec(default: int, low: int, high: int, **extra: Any) -> list[Any]:
    return ["INT", {"default": default, "min": low, "max": high, "step": 1, **extra}]


def encode_image(preview: Preview) -> bytes:
    """A preview image as a real server encodes it (quality 95, PNG level 1)."""
    image_format, image = preview
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, quality=95, compress_level=1)
    return buffer.getvalue()
