"""Subcommands of ``easel``: what a package adds to the command line.

A package adds one by naming a ``Command`` in the ``easel.commands`` entry-point
group (``bench = "ops.bench.command:COMMAND"``), the same way pipeline plug-ins join
the catalog through ``easel.pipelines``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COMMAND_GROUP", "Command"]

COMMAND_GROUP = "easel.commands"
"""Entry points in this group name a ``Command`` to add to ``easel``."""


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: its flags and what it runs (returning the exit status)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
