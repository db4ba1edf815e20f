"""Reading and writing JSON bodies through pydantic models."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.errors import Invalid

__all__ = ["BadRequest", "read_body"]

M = TypeVar("M", bound=BaseModel)


class BadRequest(Invalid):
    code = "bad_request"
    status = 400
    title = "Malformed request body"


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``.

    Raises ``BadRequest`` (400) for a body that is not JSON, ``Invalid`` (422) naming
    each bad field otherwise.
    """
    raw = await request.read()
    try:
        data: Any = json.loads(raw) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fields = {
            ".".join(str(p) for p in err["loc"]) or "(body)": err["msg"] for err in error.errors()
        }
        listing = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        raise Invalid(f"invalid body: {listing}", fields=fields) from None
