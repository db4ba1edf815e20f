"""One way to name what is wrong with validated input, field by field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from engine.validation import field_problems, listing


class Inner(BaseModel):
    size: int


class Outer(BaseModel):
    name: str
    inner: Inner


def test_each_bad_field_is_named_by_its_path() -> None:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"name": 3, "inner": {"size": "big"}})
    problems = field_problems(caught.value)
    assert set(problems) == {"name", "inner.size"}
    assert "string" in problems["name"]
    assert "integer" in problems["inner.size"]
    assert listing(problems) == f"name: {problems['name']}; inner.size: {problems['inner.size']}"


def test_an_error_about_the_whole_input_is_named_by_root() -> None:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate([1, 2])
    assert list(field_problems(caught.value, root="(body)")) == ["(body)"]
