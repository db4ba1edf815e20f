"""An operation of the OpenAPI document: one method on one path, declared once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = ["Operation"]


@dataclass(frozen=True)
class Operation:
    """One method on one path. ``responses`` maps a status to its description ("" for
    the usual one); a 2xx other than 204 carries ``answer`` (a JSON body) or
    ``content`` (any other body, as its ``content`` map)."""

    method: str
    path: str
    summary: str
    responses: dict[int, str]
    body: type[BaseModel] | None = None
    example: dict[str, Any] = field(default_factory=dict)
    tag: str = "engine"
    upload: dict[str, Any] | None = None
    """A request body that is not JSON: its ``content`` map, as written in the document."""
    answer: type[BaseModel] | None = None
    content: dict[str, Any] | None = None
    answered: tuple[int, ...] = ()
    """Error statuses whose body is ``answer`` too, not a problem."""
    parameters: tuple[dict[str, Any], ...] = ()
    """Query and header parameters beyond paging (which a page answer implies)."""
