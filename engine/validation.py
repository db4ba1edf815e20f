"""Turning a pydantic ``ValidationError`` into what a person reads: one message per field.

Used wherever input is validated against a model (REST bodies, plug-in params and
options, settings, stored records), so every rejection names its fields the same way.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["field_problems", "listing"]


def field_problems(error: ValidationError, root: str = "(root)") -> dict[str, str]:
    """``{"field.path": "what is wrong"}`` for each error; ``root`` names the whole input."""
    return {
        ".".join(str(part) for part in problem["loc"]) or root: problem["msg"]
        for problem in error.errors()
    }


def listing(problems: dict[str, str]) -> str:
    """``field: problem; other: problem`` on one line."""
    return "; ".join(f"{field}: {problem}" for field, problem in problems.items())
