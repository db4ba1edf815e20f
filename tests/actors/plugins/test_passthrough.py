from __future__ import annotations

from actors.plugins import FrameIn, FrameOut, NoParams, Passthrough, PipelineConfig


def test_returns_each_payload_as_the_same_object() -> None:
    pipeline = Passthrough(PipelineConfig(name="p", kind="passthrough"))
    pipeline.load()
    buffer = memoryview(b"abcdef")
    frames = [
        FrameIn(buffer, "raw/rgb8", 2, 1, NoParams()),
        FrameIn(b"\xff\xd8", "image/jpeg", None, None, NoParams()),
    ]
    answers = pipeline.process(frames)
    pipeline.close()
    assert answers == [FrameOut(buffer, "raw/rgb8", 2, 1), FrameOut(b"\xff\xd8", "image/jpeg")]
    assert all(
        isinstance(out, FrameOut) and out.payload is frame.payload
        for out, frame in zip(answers, frames, strict=True)
    )
