"""``python -m transport.bench.uvloop_run MODULE ARGS…``: run a server module on uvloop."""

from __future__ import annotations

import runpy
import sys

import uvloop

if __name__ == "__main__":
    uvloop.install()
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
