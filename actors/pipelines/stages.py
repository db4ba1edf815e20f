"""The stage pool: where plug-ins' per-frame ``prepare`` and ``finish`` run.

One thread pool per process, sized to the CPUs it may use, shared by every staged
pipeline: codec work (Pillow releases the GIL while it decodes and encodes) runs on
all cores, beside the replicas' ``process`` calls. The functions here run on the
pool's threads and never raise: a frame's failure is returned as its error.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from actors.plugins import FrameIn, FrameOut, Pipeline
from engine.errors import EaselError, PipelineError

__all__ = ["finish_frame", "pool_size", "prepare_frame", "stage_pool"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def pool_size() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def stage_pool() -> ThreadPoolExecutor:
    """The process's stage pool, made on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(pool_size(), thread_name_prefix="easel-stage")
        return _pool


def prepare_frame(stage: Pipeline[Any], frame: FrameIn[Any]) -> FrameIn[Any] | EaselError:
    """``frame`` with ``data`` set by the plug-in's ``prepare``, or that frame's error."""
    try:
        return replace(frame, data=stage.prepare(frame))
    except EaselError as error:
        return error
    except Exception as error:
        log.exception("pipeline %s: prepare failed", stage.config.name)
        return PipelineError(f"prepare failed: {type(error).__name__}: {error}")


def finish_frame(stage: Pipeline[Any], frame: FrameIn[Any], output: Any) -> FrameOut | EaselError:
    """The plug-in's ``finish`` of one ``process`` output: the frame's answer."""
    try:
        answer = stage.finish(frame, output)
        if not isinstance(answer, FrameOut | EaselError):
            raise TypeError(f"finish returned a {type(answer).__name__}, not FrameOut")
        return answer
    except EaselError as error:
        return error
    except Exception as error:
        log.exception("pipeline %s: finish failed", stage.config.name)
        return PipelineError(f"finish failed: {type(error).__name__}: {error}")
