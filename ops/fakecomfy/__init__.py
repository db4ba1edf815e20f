"""A fake ComfyUI server, faithful on the wire to a real ComfyUI 0.28.

It stands in for a GPU ComfyUI server in tests and benchmarks: the HTTP API, the
WebSocket events and binary previews, validation errors, history, queue and
interrupts behave as a real server's do, and a few image nodes really run on
Pillow. It can be told to die mid-job, hang, be slow, drop its sockets or reject
requests. ``python -m ops.fakecomfy --help`` runs it on its own; see
docs/comfyui-fake.md.
"""

from ops.fakecomfy.config import FakeConfig, Faults
from ops.fakecomfy.server import FakeComfy, running_fake

__all__ = ["FakeComfy", "FakeConfig", "Faults", "running_fake"]
