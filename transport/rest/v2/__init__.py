"""Comfy API v2 (``/api/v2``): the official ComfyUI HTTP API, served by the fleet.

Jobs and assets here are the engine's durable jobs and media (see :mod:`.jobs` and
:mod:`.assets`); errors use v2's envelope (:mod:`.errors`); links are absolute, as the
caller reached the engine (:mod:`.links`).
"""

from __future__ import annotations
