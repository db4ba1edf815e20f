from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import Field

from actors.plugins import (
    Answer,
    FrameIn,
    FrameOut,
    Params,
    Pipeline,
    PipelineConfig,
    check_answers,
    each_frame,
)
from engine.errors import BadContent, BadParams, Invalid

from .frames import raw_frame


class ToyParams(Params):
    level: int = Field(default=1, ge=0, le=9)
    label: str = "x"


class ToyOptions(Params):
    scale: float = 1.0


class Toy(Pipeline[ToyParams]):
    name = "toy"
    params_model = ToyParams
    options_model = ToyOptions
    max_batch = 4
    options: ToyOptions

    def process(self, batch: Sequence[FrameIn[ToyParams]]) -> list[Answer]:
        return each_frame(batch, self._one)

    def _one(self, frame: FrameIn[ToyParams]) -> FrameOut:
        if frame.params.level == 0:
            raise BadContent("level 0 frames are refused")
        if frame.params.level == 9:
            raise RuntimeError("the model broke")
        return FrameOut(frame.payload, frame.content_type, frame.width, frame.height)


def config(**fields: object) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "toy", "kind": "toy", **fields})


def test_parse_params_returns_the_model_with_defaults() -> None:
    assert Toy.parse_params({"level": 3}) == ToyParams(level=3, label="x")


def test_bad_params_name_every_bad_field() -> None:
    with pytest.raises(BadParams) as caught:
        Toy.parse_params({"level": 12, "label": 5})
    error = caught.value
    assert error.code == "bad_params"
    assert error.message.startswith("bad params: ")
    assert "level" in error.message
    assert "label" in error.message
    assert set(error.extra["fields"]) == {"level", "label"}


def test_unknown_params_are_rejected_by_name() -> None:
    with pytest.raises(BadParams, match="levle"):
        Toy.parse_params({"levle": 3})


def test_params_schema_describes_the_fields() -> None:
    schema = Toy.params_schema()
    assert set(schema["properties"]) == {"level", "label"}
    assert schema["properties"]["level"]["maximum"] == 9


def test_options_are_validated_at_construction() -> None:
    assert Toy(config(options={"scale": 2})).options.scale == 2.0
    with pytest.raises(Invalid, match="scale"):
        Toy(config(options={"scale": "big"}))


def test_max_batch_comes_from_the_kind_unless_configured() -> None:
    assert Toy(config()).max_batch == 4
    assert Toy(config(max_batch=16)).max_batch == 16
    assert Toy.max_batch == 4


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="replicas"):
        config(replicas=0)
    with pytest.raises(ValueError, match="name"):
        config(name="Not A Path")


def test_each_frame_isolates_frame_errors_and_keeps_order() -> None:
    toy = Toy(config())
    frames = [raw_frame([[(1, 2, 3)]], ToyParams(level=level)) for level in (1, 0, 2)]
    answers = toy.process(frames)
    assert isinstance(answers[0], FrameOut)
    assert isinstance(answers[1], BadContent)
    assert isinstance(answers[2], FrameOut)
    assert answers[2].payload is frames[2].payload


def test_each_frame_lets_other_exceptions_break_the_batch() -> None:
    toy = Toy(config())
    with pytest.raises(RuntimeError, match="broke"):
        toy.process([raw_frame([[(1, 2, 3)]], ToyParams(level=9))])


def test_check_answers_accepts_one_answer_per_frame() -> None:
    frames = [raw_frame([[(1, 2, 3)]], ToyParams())] * 2
    answers: list[Answer] = [FrameOut(b"", "raw/rgb8"), BadContent()]
    assert check_answers(frames, answers) is answers


@pytest.mark.parametrize(
    "answers",
    [
        (FrameOut(b"", "raw/rgb8"), FrameOut(b"", "raw/rgb8")),
        [FrameOut(b"", "raw/rgb8")],
        [FrameOut(b"", "raw/rgb8"), b"bytes"],
        [FrameOut(b"", "raw/rgb8"), ValueError("not an EaselError")],
    ],
)
def test_check_answers_rejects_a_broken_contract(answers: object) -> None:
    frames = [raw_frame([[(1, 2, 3)]], ToyParams())] * 2
    with pytest.raises(TypeError):
        check_answers(frames, answers)


def test_frames_are_immutable() -> None:
    frame = raw_frame([[(1, 2, 3)]], ToyParams())
    with pytest.raises(AttributeError):
        frame.content_type = "image/png"  # type: ignore[misc]
