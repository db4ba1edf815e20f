"""What a ComfyUI server can run: its node types and model files, and what a
workflow needs of them.

A workflow (API format) needs every ``class_type`` it names, and every model file
it names: an input value ending in a model file suffix (``.safetensors``, ``.ckpt``
…). A server is a candidate for a job only if its catalog has all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.comfyui.client import ComfyClient

__all__ = ["MODEL_SUFFIXES", "Catalog", "Needs", "fetch_catalog", "needs_of"]

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


@dataclass(frozen=True, slots=True)
class Needs:
    """The node types and model files a workflow names."""

    node_types: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()


def needs_of(prompt: Mapping[str, Any]) -> Needs:
    """What ``prompt`` (API format) needs of a server. Never raises: odd nodes are
    skipped (the server's validation reports them)."""
    types: set[str] = set()
    models: set[str] = set()
    for node in prompt.values():
        if not isinstance(node, Mapping):
            continue
        kind = node.get("class_type")
        if isinstance(kind, str):
            types.add(kind)
        inputs = node.get("inputs")
        for value in inputs.values() if isinstance(inputs, Mapping) else ():
            if isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES):
                models.add(value)
    return Needs(frozenset(types), frozenset(models))


@dataclass(frozen=True, slots=True)
class Catalog:
    """A server's node types and model files (by folder) when last fetched."""

    node_types: frozenset[str] = frozenset()
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def model_files(self) -> frozenset[str]:
        return frozenset(name for names in self.models.values() for name in names)

    def missing(self, needs: Needs) -> list[str]:
        """What the server lacks of ``needs``, sorted (empty: it can run the workflow)."""
        files = self.model_files
        lacking = [f"node:{t}" for t in needs.node_types if t not in self.node_types]
        lacking += [f"model:{m}" for m in needs.models if m not in files]
        return sorted(lacking)


async def fetch_catalog(client: ComfyClient) -> Catalog:
    """The catalog from ``/object_info``, ``/models`` and each ``/models/{folder}``.
    Raises ``ComfyUnavailable``."""
    info = await client.object_info()
    models: dict[str, tuple[str, ...]] = {}
    for folder in await client.model_folders():
        files = await client.models(folder)
        if files:
            models[folder] = tuple(files)
    return Catalog(frozenset(info), models)
