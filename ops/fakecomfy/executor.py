"""The worker: takes one prompt at a time off the queue and runs it, raising the
events a real server raises, in its order.

For a prompt whose ``client_id`` is set, that client gets ``execution_start``,
``execution_cached``, then per node ``progress_state`` (running), ``executing``,
[``progress``…], [``executed``], ``progress_state`` (finished), and at the end
``execution_success`` / ``execution_error`` / ``execution_interrupted``; the
``status`` broadcast follows and ``executing`` with ``node: null`` is the last
frame. Without a ``client_id`` only ``progress``, ``progress_state``, previews and
``execution_interrupted`` go out, to every socket.

Node functions run in a worker thread so the HTTP side stays responsive. An
interrupt takes effect at the next node boundary or progress step. The faults of
:class:`~ops.fakecomfy.config.Faults` that concern execution (hang, slow, die and
drop at a node) are applied here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ops.fakecomfy.config import FaultSwitch
from ops.fakecomfy.events import Hub, encode_preview, encode_preview_with_metadata
from ops.fakecomfy.graph import ExecutionOrder, cache_keys, link_of
from ops.fakecomfy.nodes import (
    Interrupted,
    NodeEnv,
    NodeResult,
    NodeType,
    Preview,
    RunContext,
    encode_image,
)
from ops.fakecomfy.queue import PromptQueue, QueueItem
from ops.fakecomfy.validation import full_type_name

__all__ = ["Executor"]

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Cached:
    outputs: tuple[Any, ...]
    ui: dict[str, list[Any]] | None


class NodeFailed(Exception):
    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(details["exception_message"])
        self.details = details


def _formatted(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], Image.Image):
        width, height = value[0].size
        return f"<batch of {len(value)} image(s) {width}x{height}>"
    return str(value)


@dataclass
class _Run:
    """One prompt's execution: what it has done so far and what it reports."""

    item: QueueItem
    hub: Hub
    client: str | None
    messages: list[list[Any]] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    ui_outputs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str:
        return self.item.prompt_id

    def add_message(self, event: str, data: dict[str, Any], *, broadcast: bool) -> None:
        data = {**data, "timestamp": now_ms()}
        self.messages.append([event, data])
        if self.client is not None or broadcast:
            self.hub.send(event, data, self.client)

    def _progress_state(self) -> None:
        self.hub.send(
            "progress_state",
            {"prompt_id": self.prompt_id, "nodes": copy.deepcopy(self.progress)},
            self.client,
        )

    def node_state(self, node_id: str, state: str, value: float, maximum: float) -> None:
        self.progress[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        self._progress_state()

    def finish(self, node_id: str) -> None:
        maximum = self.progress.get(node_id, {}).get("max", 1.0)
        self.node_state(node_id, "finished", maximum, maximum)

    def emit_progress(
        self, node_id: str, value: int, total: int, image: tuple[str, bytes] | None
    ) -> None:
        """Runs on the loop for every progress step of a node."""
        self.node_state(node_id, "running", value, total)
        metadata = self.hub.wants_metadata(self.client)
        if image is not None and metadata:
            meta = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": f"image/{image[0].lower()}",
            }
            self.hub.send_bytes(encode_preview_with_metadata(meta, image[1]), self.client)
        data = {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id}
        self.hub.send("progress", data, self.client)
        if image is not None and not metadata:
            self.hub.send_bytes(encode_preview(image[0], image[1]), self.client)

    def executed_node(self, node_id: str, ui: dict[str, Any] | None) -> None:
        if ui is not None:
            self.ui_outputs[node_id] = ui
            self.meta[node_id] = {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            if self.client is not None:
                data = {"node": node_id, "display_node": node_id, "output": ui}
                self.hub.send("executed", {**data, "prompt_id": self.prompt_id}, self.client)
        self.finish(node_id)
        self.executed.append(node_id)


class Executor:
    """Runs the queue's prompts one at a time, with a node-output cache."""

    def __init__(
        self,
        queue: PromptQueue,
        hub: Hub,
        registry: Mapping[str, NodeType],
        env: NodeEnv,
        faults: FaultSwitch,
        die: Callable[[], None],
        drop_sockets: Callable[[], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self.hub = hub
        self.registry = registry
        self.env = env
        self.faults = faults
        self._die = die
        self._drop_sockets = drop_sockets
        self.cache: dict[str, Cached] = {}
        self.interrupt_flag = threading.Event()
        self.nodes_started = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._work())

    def kill(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def interrupt(self) -> None:
        self.interrupt_flag.set()

    async def _work(self) -> None:
        while True:
            item, task = await self.queue.get()
            try:
                await self._execute(item, task)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the fake: record the prompt as failed, go on
                log.exception("prompt %s broke the fake executor", item.prompt_id)
                if task in self.queue.running:
                    status = {"status_str": "error", "completed": False, "messages": []}
                    self.queue.task_done(task, {"outputs": {}, "meta": {}}, status)

    async def _execute(self, item: QueueItem, task: int) -> None:
        started = time.monotonic()
        self.interrupt_flag.clear()
        client = item.extra_data.get("client_id")
        client = client if isinstance(client, str) else None
        self.hub.client_id = client
        run = _Run(item, self.hub, client)
        prompt = item.prompt
        run.add_message("execution_start", {"prompt_id": item.prompt_id}, broadcast=False)
        self.queue.started[item.prompt_id] = now_ms()
        keys = cache_keys(prompt, self.registry, self.env)
        wanted = set(keys.values())
        self.cache = {k: v for k, v in self.cache.items() if k in wanted}
        cached_nodes = [n for n in prompt if keys[n] in self.cache]
        data = {"nodes": cached_nodes, "prompt_id": item.prompt_id}
        run.add_message("execution_cached", data, broadcast=False)
        order = ExecutionOrder(prompt, self.registry, item.outputs, lambda n: keys[n] in self.cache)
        success = False
        node_id = ""
        try:
            while (staged := order.next()) is not None:
                node_id = staged
                await self._node(run, node_id, keys)
                order.done(node_id)
            success = True
        except Interrupted:
            data = self._failure(run, node_id)
            run.add_message("execution_interrupted", data, broadcast=True)
        except NodeFailed as failed:
            data = {**self._failure(run, node_id), **failed.details}
            registry = self.registry
            data["current_outputs"] = [
                n for n in reversed(prompt) if not registry[prompt[n]["class_type"]].output_node
            ]
            run.add_message("execution_error", data, broadcast=False)
        if success:
            run.add_message("execution_success", {"prompt_id": item.prompt_id}, broadcast=False)
        self.hub.last_node_id = None
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": run.messages,
        }
        self.queue.task_done(task, {"outputs": run.ui_outputs, "meta": run.meta}, status)
        log.info("Prompt executed in %.2f seconds", time.monotonic() - started)
        if client is not None:
            self.hub.send("executing", {"node": None, "prompt_id": item.prompt_id}, client)

    def _failure(self, run: _Run, node_id: str) -> dict[str, Any]:
        return {
            "prompt_id": run.prompt_id,
            "node_id": node_id,
            "node_type": run.item.prompt[node_id]["class_type"],
            "executed": list(run.executed),
        }

    async def _node(self, run: _Run, node_id: str, keys: dict[str, str]) -> None:
        node = run.item.prompt[node_id]
        node_type = self.registry[node["class_type"]]
        hit = self.cache.get(keys[node_id])
        if hit is not None:
            run.executed_node(node_id, hit.ui)
            return
        run.node_state(node_id, "running", 0.0, 1.0)
        if run.client is not None:
            self.hub.last_node_id = node_id
            data = {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
            self.hub.send("executing", data, run.client)
        await self._node_faults()
        inputs = self._inputs(run, node, node_type, keys)
        if self.interrupt_flag.is_set():
            raise Interrupted
        loop = asyncio.get_running_loop()
        result = await asyncio.to_thread(self._call, loop, run, node_id, node_type, inputs)
        self.cache[keys[node_id]] = Cached(result.outputs, result.ui)
        run.executed_node(node_id, result.ui)

    async def _node_faults(self) -> None:
        self.nodes_started += 1
        faults = self.faults.faults
        if faults.drop_ws_at_node is not None:
            if faults.drop_ws_at_node <= 1:
                faults.drop_ws_at_node = None
                await self.hub.flush()
                await self._drop_sockets()
            else:
                faults.drop_ws_at_node -= 1
        if faults.die_at_node is not None:
            if faults.die_at_node > 1:
                faults.die_at_node -= 1
            else:
                faults.die_at_node = None
                await self.hub.flush()  # the clients see this node start, then the crash
                self._die()
                await asyncio.Event().wait()  # the die cancels this task
        while self.faults.faults.hang:
            await self.faults.changed()

    def _inputs(
        self, run: _Run, node: dict[str, Any], node_type: NodeType, keys: dict[str, str]
    ) -> dict[str, Any]:
        spec = node_type.inputs(self.env)
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        values: dict[str, Any] = {}
        for name, value in node.get("inputs", {}).items():
            link = link_of(value, run.item.prompt)
            if link is not None:
                source = self.cache.get(keys[link[0]])
                values[name] = None if source is None else source.outputs[link[1]]
            elif name in declared:
                values[name] = value
        hidden = spec.get("hidden", {})
        if "prompt" in hidden:
            values["prompt"] = run.item.prompt
        if "extra_pnginfo" in hidden and "extra_pnginfo" in run.item.extra_data:
            values["extra_pnginfo"] = run.item.extra_data["extra_pnginfo"]
        return values

    def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        run: _Run,
        node_id: str,
        node_type: NodeType,
        inputs: dict[str, Any],
    ) -> NodeResult:
        """Runs in a worker thread."""

        def progress(value: int, total: int, preview: Preview | None) -> None:
            if self.interrupt_flag.is_set():
                raise Interrupted
            delay = self.faults.faults.step_delay
            if delay > 0 and self.interrupt_flag.wait(delay):
                raise Interrupted
            image = None if preview is None else (preview[0], encode_image(preview))
            try:
                loop.call_soon_threadsafe(run.emit_progress, node_id, value, total, image)
            except RuntimeError:  # the loop is gone: the fake died or stopped
                pass

        ctx = RunContext(self.env, node_id, run.item.prompt, inputs.get("extra_pnginfo"), progress)
        try:
            faults = self.faults.faults
            if faults.step_delay > 0 and not node_type.reports_progress:
                for step in range(faults.slow_steps):
                    progress(step + 1, faults.slow_steps, None)
            given = {k: v for k, v in inputs.items() if k not in ("prompt", "extra_pnginfo")}
            return node_type.function(ctx, given)
        except Interrupted:
            raise
        except Exception as ex:
            raise NodeFailed(
                {
                    "exception_message": f"{ex}\n",
                    "exception_type": full_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {
                        k: [_formatted(v)] for k, v in inputs.items() if k not in ("prompt",)
                    },
                }
            ) from ex
