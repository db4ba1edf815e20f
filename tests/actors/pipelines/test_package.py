from __future__ import annotations

import actors.pipelines


def test_public_names_are_pinned() -> None:
    assert sorted(actors.pipelines.__all__) == [
        "Answer",
        "BUILTIN_PIPELINES",
        "ENTRY_POINT_GROUP",
        "FrameIn",
        "FrameOut",
        "ImageFx",
        "ImageFxOptions",
        "ImageFxParams",
        "NoOptions",
        "NoParams",
        "Params",
        "Passthrough",
        "Pipeline",
        "PipelineCatalog",
        "PipelineConfig",
        "PipelineKind",
        "Simulated",
        "SimulatedCrash",
        "SimulatedOptions",
        "SimulatedParams",
        "check_answers",
        "each_frame",
    ]
    assert all(hasattr(actors.pipelines, name) for name in actors.pipelines.__all__)
