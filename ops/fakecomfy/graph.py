"""Graph helpers for execution: cache keys and the order nodes run in.

A node's cache key covers its class, its ``is_changed`` value (LoadImage: the
file's hash), its literal inputs and, through its links, the keys of everything
upstream. A node whose key is in the cache does not run again.

:class:`ExecutionOrder` stages nodes like a real server: starting from the output
nodes, it pulls in every upstream node that is not cached, and among the nodes
that are ready it prefers an output node, then a node feeding an output node, then
one two steps away, then the first ready one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ops.fakecomfy.nodes import NodeEnv, NodeType

__all__ = ["ExecutionOrder", "cache_keys", "link_of"]


def link_of(value: Any, prompt: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(source node, output index)`` when ``value`` is a link to a node of ``prompt``."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and value[0] in prompt
        and isinstance(value[1], int)
    ):
        return value[0], value[1]
    return None


def cache_keys(
    prompt: Mapping[str, Any], registry: Mapping[str, NodeType], env: NodeEnv
) -> dict[str, str]:
    """The cache key of every node of ``prompt``."""
    keys: dict[str, str] = {}
    visiting: set[str] = set()

    def key(node_id: str) -> str:
        if node_id in keys:
            return keys[node_id]
        if node_id in visiting:
            return "cycle"
        visiting.add(node_id)
        node = prompt[node_id]
        node_type = registry[node["class_type"]]
        inputs = node.get("inputs", {})
        changed: Any = None
        if node_type.is_changed is not None:
            try:
                changed = node_type.is_changed(env, inputs)
            except Exception:
                changed = uuid.uuid4().hex
        parts: dict[str, Any] = {}
        for name, value in inputs.items():
            link = link_of(value, prompt)
            parts[name] = value if link is None else ["link", key(link[0]), link[1]]
        blob = json.dumps([node["class_type"], repr(changed), parts], sort_keys=True, default=repr)
        keys[node_id] = hashlib.sha256(blob.encode()).hexdigest()
        visiting.discard(node_id)
        return keys[node_id]

    for node_id in prompt:
        key(node_id)
    return keys


class ExecutionOrder:
    """The nodes one prompt still has to stage, and the order to stage them in."""

    def __init__(
        self,
        prompt: Mapping[str, Any],
        registry: Mapping[str, NodeType],
        outputs: list[str],
        cached: Callable[[str], bool],
    ) -> None:
        self._prompt = prompt
        self._registry = registry
        self._cached = cached
        self.pending: dict[str, None] = {}
        self._blocking: dict[str, dict[str, None]] = {}
        self._blocked_by: dict[str, int] = {}
        for output in outputs:
            self._add(output)

    def _add(self, start: str) -> None:
        stack = [start]
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = None
            self._blocking.setdefault(node_id, {})
            self._blocked_by.setdefault(node_id, 0)
            links = []
            for value in self._prompt[node_id].get("inputs", {}).values():
                link = link_of(value, self._prompt)
                if link is not None and not self._cached(link[0]):
                    stack.append(link[0])
                    links.append(link[0])
            for source in links:
                self._blocking.setdefault(source, {})
                self._blocked_by.setdefault(source, 0)
                if node_id not in self._blocking[source]:
                    self._blocking[source][node_id] = None
                    self._blocked_by[node_id] += 1

    def _is_output(self, node_id: str) -> bool:
        return self._registry[self._prompt[node_id]["class_type"]].output_node

    def next(self) -> str | None:
        """The node to run next, or ``None`` when the prompt is done."""
        ready = [n for n in self.pending if self._blocked_by[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self._blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self._blocking[node_id]:
                if any(self._is_output(b) for b in self._blocking.get(blocked, ())):
                    return node_id
        return ready[0]

    def done(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        for blocked in self._blocking.get(node_id, ()):
            self._blocked_by[blocked] -= 1
