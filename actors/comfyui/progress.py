"""How far a running prompt has got, from its server's socket events, and its latest
preview.

A prompt runs the nodes of its graph that its server did not cache, one at a time:
``execution_cached`` names the cached ones, ``executing`` the node starting now,
``progress`` the steps of that node (a sampler's), ``executed`` and ``progress_state``
(``finished``) the nodes done. The overall fraction is
``(nodes done + step / steps of the current node) / nodes to run``. Previews are kept
in memory only (the newest one per job, at most :data:`PREVIEW_EVERY` apart), never
stored. Loop only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from actors.comfyui.client import ComfyEvent, Preview
from engine.storage import Job

__all__ = ["PREVIEW_EVERY", "Previews", "RunProgress", "ended_detail"]

PREVIEW_EVERY = 0.5
"""Seconds between two previews kept for one job (the newest wins within them)."""


@dataclass(slots=True)
class RunProgress:
    """The progress of one prompt of a job, fed with its socket events."""

    prompt: dict[str, Any]
    cached: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    current: str | None = None
    step: int = 0
    steps: int = 0

    @property
    def nodes_total(self) -> int:
        return max(0, len(self.prompt) - len(self.cached))

    @property
    def nodes_done(self) -> int:
        return min(self.nodes_total, len(self.done - self.cached))

    def feed(self, event: ComfyEvent) -> bool:
        """Take one event into account; whether the progress changed."""
        data = event.data
        if event.type == "execution_start":
            self.cached.clear()
            self.done.clear()
            self.current, self.step, self.steps = None, 0, 0
        elif event.type == "execution_cached":
            nodes = data.get("nodes")
            self.cached = {str(n) for n in nodes if str(n) in self.prompt} if nodes else set()
        elif event.type == "executing":
            node = data.get("node")
            if node is None:
                return False  # the prompt ended: its history says how
            if self.current is not None and self.current != str(node):
                self.done.add(self.current)
            self._begin(str(node))
        elif event.type == "progress":
            value, most, node = data.get("value"), data.get("max"), data.get("node")
            if not (isinstance(value, int | float) and isinstance(most, int | float)):
                return False
            if isinstance(node, str) and node != self.current:
                self._begin(node)
            self.step, self.steps = int(value), int(most)
        elif event.type == "executed":
            node = data.get("node")
            if node is None:
                return False
            self.done.add(str(node))
        elif event.type == "progress_state":
            nodes = data.get("nodes")
            finished = {
                str(key)
                for key, state in (nodes.items() if isinstance(nodes, dict) else ())
                if isinstance(state, dict) and state.get("state") == "finished"
            }
            if finished <= self.done:
                return False
            self.done |= finished & self.prompt.keys()
        else:
            return False
        return True

    def _begin(self, node: str) -> None:
        self.current, self.step, self.steps = node, 0, 0

    @property
    def fraction(self) -> float:
        """The whole prompt's progress, 0 to 1."""
        total = self.nodes_total
        if total == 0:
            return 0.0
        part = 0.0
        if self.current is not None and self.current not in self.done and self.steps > 0:
            part = min(1.0, self.step / self.steps)
        return min(1.0, (self.nodes_done + part) / total)

    def detail(self) -> dict[str, Any]:
        """What ``Job.detail`` says of it."""
        node = self.current
        spec = self.prompt.get(node) if node is not None else None
        kind = spec.get("class_type") if isinstance(spec, dict) else None
        return {
            "nodes_done": self.nodes_done,
            "nodes_total": self.nodes_total,
            "current_node": node,
            "current_node_class": kind if isinstance(kind, str) else None,
            "step": self.step,
            "steps": self.steps,
        }

    def ended(self) -> dict[str, Any]:
        """The detail of a prompt that succeeded: every node to run done."""
        return {
            **self.detail(),
            "nodes_done": self.nodes_total,
            "current_node": None,
            "current_node_class": None,
        }


def ended_detail(job: Job, run: RunProgress | None) -> dict[str, Any]:
    """The detail of a job whose prompt succeeded: every node to run done (from its
    run's events, else from its last stored detail, else its whole graph)."""
    if run is not None:
        return run.ended()
    total = job.detail.get("nodes_total")
    if not isinstance(total, int):
        total = len(job.prompt)
    return {
        "nodes_done": total,
        "nodes_total": total,
        "current_node": None,
        "current_node_class": None,
        "step": job.detail.get("step", 0),
        "steps": job.detail.get("steps", 0),
    }


class Previews:
    """The newest preview of each job this node drives, and the job each server runs
    now (by its socket): a bare preview (type 1) names no prompt and belongs to it."""

    def __init__(self) -> None:
        self._latest: dict[str, _Latest] = {}
        self._running_on: dict[str, str] = {}

    def running(self, server_id: str, job_id: str) -> None:
        self._running_on[server_id] = job_id

    def ended(self, server_id: str, job_id: str) -> None:
        if self._running_on.get(server_id) == job_id:
            del self._running_on[server_id]

    def job_on(self, server_id: str) -> str | None:
        return self._running_on.get(server_id)

    def keep(self, job_id: str, preview: Preview, node: str | None) -> None:
        """Keep ``preview`` as the job's newest, unless one was kept within
        :data:`PREVIEW_EVERY`; ``node``: the node running when the preview names none."""
        last = self._latest.get(job_id)
        if last is not None and time.monotonic() - last.at < PREVIEW_EVERY:
            return
        named = preview.metadata.get("node_id")
        self._latest[job_id] = _Latest(
            str(named) if named is not None else node, preview.content_type, preview.image
        )

    def get(self, job_id: str) -> tuple[str | None, str, bytes] | None:
        latest = self._latest.get(job_id)
        return None if latest is None else (latest.node, latest.content_type, latest.image)

    def drop(self, job_id: str) -> None:
        """Forget a job let go."""
        self._latest.pop(job_id, None)
        for server_id in [s for s, j in self._running_on.items() if j == job_id]:
            del self._running_on[server_id]


@dataclass(frozen=True, slots=True)
class _Latest:
    node: str | None
    content_type: str
    image: bytes
    at: float = field(default_factory=time.monotonic)
